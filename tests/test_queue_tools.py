"""`queue retry|drop`: ids, --state or --all; they say what they will do, ask unless --yes, and a
retry never sends again what the provider took without --force (a second, paid SMS)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from relay.cli import main as cli
from tests import spooldb
from tests.fakes import ReplyingProvider, wait_for
from tests.helpers import message, smtplib_send, wait_state


async def _queue(relay: Any, *args: str) -> tuple[int, str, str]:
    """The command as an operator types it, on the relay's own config; stdin is no terminal."""
    import contextlib

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = await asyncio.to_thread(cli.main, ["queue", *args, "-c", str(relay.config_path)])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
async def confirmed(replying_relay: Any) -> tuple[ReplyingProvider, Any, str]:
    fake, relay = await replying_relay()
    await asyncio.to_thread(smtplib_send, relay.port, message())
    row = await wait_state(relay, "confirmed")
    return fake, relay, str(row["id"])


async def test_a_confirmed_message_is_not_sent_again_without_force(confirmed: Any) -> None:
    fake, relay, relay_id = confirmed
    code, out, err = await _queue(relay, "retry", relay_id, "--yes")
    assert code == 1 and "nothing to retry" in out
    assert f"skipped {relay_id} (confirmed): the provider took it already (1 SMS)" in err and "--force" in err
    assert (await wait_state(relay, "confirmed"))["attempts"] == 1 and len(fake.received) == 1


async def test_force_sends_it_again_and_says_what_it_costs(confirmed: Any) -> None:
    fake, relay, relay_id = confirmed
    code, out, _err = await _queue(relay, "retry", relay_id, "--force", "--yes")
    assert code == 0
    assert "retry 1 message(s):" in out and "the provider took already: about 1 more SMS to pay for" in out
    assert "1 queued again" in out
    await wait_for(lambda: len(fake.received) == 2, timeout=20)


async def test_without_yes_and_without_a_terminal_nothing_changes(confirmed: Any) -> None:
    _fake, relay, relay_id = confirmed
    code, out, err = await _queue(relay, "drop", relay_id)
    assert code == 1 and "drop 1 message(s):" in out and "nothing changed" in out and "add --yes" in err
    assert (await wait_state(relay, "confirmed"))["id"] == relay_id


async def test_drop_by_state_and_a_selector_is_required(confirmed: Any) -> None:
    _fake, relay, relay_id = confirmed
    code, _out, err = await _queue(relay, "drop")
    assert code == 2 and "name message ids, or --state STATE, or --all" in err
    code, out, _err = await _queue(relay, "drop", "--state", "confirmed", "--yes")
    assert code == 0 and "1 dropped" in out
    code, _out, err = await _queue(relay, "show", relay_id)
    assert code == 1 and f"no message {relay_id}" in err


async def test_a_dry_run_message_needs_force_too(provider: Any, relay_factory: Any, tmp_path: Path) -> None:
    """In a dry run nothing was sent; retried after the config went live, it would be: a cost."""
    _fake, port = provider
    relay = await relay_factory(port, outbox=tmp_path / "outbox")
    await asyncio.to_thread(smtplib_send, relay.port, message())
    row = await wait_state(relay, "dry-run")
    code, _out, err = await _queue(relay, "retry", "--all", "--yes")
    assert (
        code == 1
        and f"skipped {row['id']} (dry-run): a dry run wrote it to the outbox" in err
        and "--force" in err
    )


async def _state_of(relay: Any, relay_id: str) -> str:
    ((found,),) = await spooldb.select(relay, "messages", "state", id=relay_id)
    return str(found)


async def test_a_held_message_stays_unsent_until_released(provider: Any, relay_factory: Any) -> None:
    """Held: kept, never claimed, even when it is due first; released, it goes out."""
    fake, port = provider
    fake.replies = ["451 4.3.0 try again later"]  # the first attempt is deferred
    relay = await relay_factory(port, min_backoff=600, max_backoff=600)  # and stays so (see below)
    await asyncio.to_thread(smtplib_send, relay.port, message("first: held"))
    held_id = str((await wait_state(relay, "deferred"))["id"])
    code, out, err = await _queue(relay, "hold", held_id, "--yes")
    assert code == 0 and "hold 1 message(s):" in out and "1 held" in out, (out, err)
    # Due long ago: a relay that claimed held messages would send it before the next one.
    await spooldb.update(relay, "messages", {"id": held_id}, next_attempt=0)
    await asyncio.to_thread(smtplib_send, relay.port, message("second: goes out"))
    await wait_for(lambda: len(fake.received) == 1, timeout=20)
    assert "second: goes out" in fake.received[0].body
    assert await _state_of(relay, held_id) == "held"
    code, out, err = await _queue(relay, "retry", held_id, "--yes")  # a retry releases it too
    assert code == 0 and "1 queued again" in out, (out, err)
    await wait_for(lambda: len(fake.received) == 2, timeout=20)
    assert "first: held" in fake.received[1].body


async def test_hold_and_release_say_what_they_do_not_apply_to(provider: Any, relay_factory: Any) -> None:
    fake, port = provider
    fake.replies = ["451 4.3.0 try again later"]
    # The deferred message must stay deferred while the commands run, however slow the machine:
    # a retry a second later (the tests' usual backoff) would take it out from under them.
    relay = await relay_factory(port, min_backoff=600, max_backoff=600)
    await asyncio.to_thread(smtplib_send, relay.port, message())
    relay_id = str((await wait_state(relay, "deferred"))["id"])
    code, out, err = await _queue(relay, "release", relay_id, "--yes")
    assert code == 1 and "nothing to release" in out and f"skipped {relay_id} (deferred): not held" in err
    code, out, _err = await _queue(relay, "hold", "--state", "deferred", "--yes")
    assert code == 0 and "1 held" in out
    code, out, err = await _queue(relay, "hold", relay_id, "--yes")
    assert code == 1 and "only a waiting message (queued, deferred) can be held" in err
    code, out, _err = await _queue(relay, "list", "--state", "held")
    assert code == 0 and relay_id in out
    code, out, _err = await _queue(relay, "release", "--all", "--yes")
    assert code == 0 and "1 released" in out
    await wait_for(lambda: len(fake.received) == 1, timeout=20)
    # The provider has it; the relay records that a moment later: waited for, not raced.
    assert (await wait_state(relay, "sent"))["id"] == relay_id


def _deny_sender(name: str) -> Any:
    """The provider's ERROR 6 for one sender name, OK for any other."""

    def answer(got: Any) -> str:
        if got.command.options.sender == name:
            return "ERROR = 6 (message denied)"
        return f"OK - 2 SMS, ID - {got.relay_id}"

    return answer


async def test_a_retry_after_fixing_the_config_sends_the_fixed_request(replying_relay: Any) -> None:
    """Friction 3: the route's sender was refused; the operator fixes it and retries: the mail
    is rendered again under the config in force, not sent as stored with the old sender."""
    fake, relay = await replying_relay(ReplyingProvider(answer=_deny_sender("ALERTS")))
    await asyncio.to_thread(smtplib_send, relay.port, message(to="oncall@sms.example.com"))
    relay_id = str((await wait_state(relay, "failed"))["id"])
    before = relay.config_path.read_text()
    relay.config_path.write_text(before.replace("sender: ALERTS", "sender: OPSDESK"))
    code, out, _err = await _queue(relay, "show", relay_id)
    assert code == 0 and "config in force is" in out and "renders it again from the kept mail" in out
    code, out, err = await _queue(relay, "retry", relay_id, "--yes")
    assert code == 0, (out, err)
    assert f"{relay_id}: rendered again under config" in out and "changed: the request's options" in out
    row = await wait_state(relay, "confirmed")
    assert row["id"] == relay_id and row["attempts"] == 2
    assert [r.command.options.sender for r in fake.received] == ["ALERTS", "OPSDESK"]
    code, out, _err = await _queue(relay, "show", relay_id)
    assert "(the config in force)" in out


async def test_a_retry_the_config_in_force_refuses_is_not_sent(replying_relay: Any) -> None:
    fake, relay = await replying_relay(ReplyingProvider(answer=_deny_sender("ALERTS")))
    await asyncio.to_thread(smtplib_send, relay.port, message(to="oncall@sms.example.com"))
    relay_id = str((await wait_state(relay, "failed"))["id"])
    text = relay.config_path.read_text()
    relay.config_path.write_text(
        text.replace("'^oncall@sms\\.example\\.com$'", "'^pager@sms\\.example\\.com$'")
    )
    code, out, err = await _queue(relay, "retry", relay_id, "--yes")
    assert code == 1 and "nothing to retry" in out
    assert "the config in force refuses its mail" in err and "--as-stored sends the stored request" in err
    code, out, err = await _queue(relay, "retry", relay_id, "--yes", "--as-stored")
    assert code == 0 and "1 queued again" in out, (out, err)
    await wait_for(lambda: len(fake.received) == 2, timeout=20)
    assert fake.received[1].command is not None and fake.received[1].command.options.sender == "ALERTS"
