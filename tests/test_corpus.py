"""Every corpus mail renders to the expected SMS text, and to a provider mail that parses back."""

from __future__ import annotations

import base64
import email
import json
from pathlib import Path

import pytest
import yaml

from relay import pipeline
from relay.cli import main as cli
from relay.config import load as config
from relay.errors import Exit, RelayError
from relay.formatters import command
from relay.parsers import command as command_parser
from tests.helpers import CORPUS, NOW, body_text, counter

EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text(encoding="utf-8"))
MAILS = sorted(CORPUS.glob("*.eml"))
CFG = config.load(CORPUS / "relay.yaml", env={})
SECRET = "corpus-secret-pw"


def test_corpus_is_big_enough_and_fully_described() -> None:
    assert len(MAILS) >= 30
    assert {m.stem for m in MAILS} == set(EXPECTED)


def _render(path: Path) -> pipeline.Rendered:
    raw = path.read_bytes()
    return pipeline.render(
        raw,
        mail_from="sender@example.com",
        rcpt_tos=pipeline.header_recipients(raw),
        config=CFG,
        new_id=counter("c"),
        now=NOW,
        hostname="relay.test",
    )


@pytest.mark.parametrize("path", MAILS, ids=[m.stem for m in MAILS])
def test_corpus_mail(path: Path) -> None:
    want = EXPECTED[path.stem]
    if "error" in want:
        with pytest.raises(RelayError) as info:
            _render(path)
        assert f"{info.value.reply.code} {info.value.reply.enhanced}" == want["error"]
        return
    result = _render(path)
    assert len(result.provider_mails) == 1
    pm = result.provider_mails[0]
    text = pm.texts[0]
    if "text" in want:
        assert text == want["text"]
    else:
        assert text.startswith(want["text_startswith"])
        assert text.endswith(want["text_endswith"])
        assert len(text) <= want["max_len"]
    assert pm.segments.parts == want["parts"]
    assert pm.segments.encoding.value == want["encoding"]
    assert result.mail.body_source.value == want["source"]
    assert list(pm.phones) == want.get("phones", ["79991234567"])
    assert pm.mode.value == want.get("mode", "command")
    warnings = result.mail.warnings
    assert (warnings[0].split(";")[0] if warnings else None) == want.get("warning")


@pytest.mark.parametrize("path", MAILS, ids=[m.stem for m in MAILS])
def test_corpus_provider_mail_parses_back(path: Path) -> None:
    if "error" in EXPECTED[path.stem]:
        return
    result = _render(path)
    for request, pm in zip(result.requests, result.provider_mails, strict=True):
        msg = email.message_from_bytes(pm.message)
        assert msg["To"] == "send@send.smscentre.com"
        assert msg["From"] == "replies@relay.example.com"
        assert msg["Content-Transfer-Encoding"] == "base64"
        body = body_text(msg)
        parsed = command_parser.parse(body)
        assert parsed.login == "testlogin"
        assert parsed.password == SECRET
        assert parsed.request_id == pm.relay_id
        assert parsed.options.test == "1"
        assert [e.text for e in parsed.entries] == command.as_sent(request)
        assert [p for e in parsed.entries for p in e.phones] == list(pm.phones)
        assert b"\r\n" in pm.message and b"\n" not in pm.message.replace(b"\r\n", b"")


@pytest.mark.parametrize("path", MAILS, ids=[m.stem for m in MAILS])
def test_render_cli_json(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["render", "-c", str(CORPUS / "relay.yaml"), "--json", str(path)])
    out, err = capsys.readouterr()
    assert SECRET not in out + err
    data = json.loads(out)
    want = EXPECTED[path.stem]
    if "error" in want:
        assert code == Exit.DATAERR
        assert f"{data['error']['code']} {data['error']['enhanced']}" == want["error"]
        assert "rejected: " + want["error"] in err
        return
    assert code == 0
    (item,) = data
    for key in ("mode", "mail_from", "rcpt", "phones", "text", "parts", "message"):
        assert key in item
    if "text" in want:
        assert item["text"] == want["text"]
    # The message is the exact mail, base64 body and all, but with the password masked.
    _head, _, body = item["message"].partition("\r\n\r\n")
    decoded = base64.b64decode(body)
    assert b":***:" in decoded
    assert item["command"].split(":")[1] == "***"


def test_render_cli_text_output_masks_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["render", "-c", str(CORPUS / "relay.yaml"), str(CORPUS / "zabbix_problem.eml")]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    assert "testlogin:***:" in out
    assert "route 'by-number' (command)" in out
    assert "parts:    1 (GSM-7" in out
    assert (
        "note:     route by-number: zabbix summary (built-in): state='PROBLEM' kept; host='app-03' kept"
        in out
    )
    assert "value='Current utilization: 97.2 %' kept" in out and "left out of the mail: subject" in out
