"""The alert corpus (tests/corpus/alerts/): real tools' default notification mails, each with the
facts a good SMS keeps (hosts, problem, state, key value) and the boilerplate it must drop.

`dev/` is what the summariser was built against; `heldout/` was set aside before any code was
written (other tools, versions, languages) and is only scored, never tuned on. `benchmarks/`
and tests/test_alert_corpus.py both read it through `judge`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from relay.config import load as config_mod
from relay.config.schema import Config
from relay.formatters import segments
from relay.pipeline import render

ROOT = Path(__file__).parent / "corpus" / "alerts"
EXAMPLE = Path(__file__).parent.parent / "config" / "relay.example.yaml"
RCPT = "oncall@sms.example.com"


@dataclass(frozen=True)
class Case:
    file: str
    tool: str
    variant: str
    hosts: tuple[str, ...]
    problem: tuple[str, ...]
    state: tuple[str, ...]
    value: tuple[str, ...]
    boilerplate: tuple[str, ...]

    @property
    def split(self) -> str:
        return self.file.split("/", 1)[0]

    @property
    def path(self) -> Path:
        return ROOT / self.file


@dataclass(frozen=True)
class Verdict:
    case: Case
    text: str
    parts: int
    missing: tuple[str, ...]  # what the SMS lacks or has that it should not

    @property
    def ok(self) -> bool:
        return not self.missing


def cases() -> list[Case]:
    found: list[Case] = []
    for facts in sorted((ROOT / "facts").glob("*.yaml")):
        entries: list[dict[str, Any]] = yaml.safe_load(facts.read_text(encoding="utf-8")) or []
        for e in entries:
            found.append(
                Case(
                    file=str(e["file"]),
                    tool=str(e["tool"]),
                    variant=str(e.get("variant", "")),
                    hosts=tuple(str(h) for h in e.get("hosts") or ()),
                    problem=tuple(str(p) for p in e.get("problem") or ()),
                    state=tuple(str(s) for s in e.get("state") or ()),
                    value=tuple(str(v) for v in e.get("value") or ()),
                    boilerplate=tuple(str(b) for b in e.get("boilerplate") or ()),
                )
            )
    return found


def example_config() -> Config:
    return config_mod.load(EXAMPLE, env={})


def sms_text(raw: bytes, cfg: Config) -> str:
    from datetime import UTC, datetime

    rendered = render(raw, mail_from="monitor@example.com", rcpt_tos=[RCPT], config=cfg,
                      new_id=lambda: "corpus1", now=datetime(2026, 12, 1, tzinfo=UTC), hostname="relay")  # fmt: skip
    return "\n".join(t for m in rendered.provider_mails for t in m.texts)


def judge(case: Case, cfg: Config) -> Verdict:
    text = sms_text(case.path.read_bytes(), cfg)
    low = " ".join(text.lower().split())
    missing: list[str] = []

    def has(s: str) -> bool:
        return " ".join(s.lower().split()) in low

    missing += [f"host {h!r}" for h in case.hosts if not has(h)]
    if case.problem and not any(has(p) for p in case.problem):
        missing.append(f"problem {case.problem[0]!r}")
    if case.state and not any(has(s) for s in case.state):
        missing.append(f"state {case.state[0]!r}")
    if case.value and not any(has(v) for v in case.value):
        missing.append(f"value {case.value[0]!r}")
    missing += [f"boilerplate {b!r}" for b in case.boilerplate if has(b)]
    parts = segments.count(text).parts
    if parts != 1:
        missing.append(f"{parts} parts")
    return Verdict(case, text, parts, tuple(missing))


def report() -> str:
    """A Markdown table of the corpus: per tool, the dev and held-out mails that pass and which
    recogniser took them (docs/summaries.md is this output)."""
    from collections import defaultdict

    from relay import summaries
    from relay.parsers import inbound

    cfg = example_config()
    splits = ("dev", "heldout", "heldout2", "heldout3", "heldout4", "heldout5")
    rows: dict[str, dict[str, Any]] = defaultdict(lambda: {**{s: [0, 0] for s in splits}, "by": set()})
    for case in cases():
        verdict = judge(case, cfg)
        row = rows[case.tool]
        row[case.split][0] += verdict.ok
        row[case.split][1] += 1
        mail = inbound.parse(case.path.read_bytes(), rcpt_tos=[RCPT], settings=cfg.parsing)
        summary = summaries.summarise(mail)
        row["by"].add(summary.recogniser if summary else "plain text")
    lines = ["| tool | dev | held-out | second | third | fourth | fifth | summarised by |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for tool in sorted(rows, key=str.lower):
        r = rows[tool]
        cells = " | ".join(f"{r[s][0]}/{r[s][1]}" if r[s][1] else "-" for s in splits)
        lines.append(f"| {tool} | {cells} | {', '.join(sorted(r['by']))} |")
    total = " | ".join(
        f"{sum(r[s][0] for r in rows.values())}/{sum(r[s][1] for r in rows.values())}" for s in splits
    )
    lines.append(f"| **all {len(rows)} tools** | {total} | |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
