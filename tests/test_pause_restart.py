"""A provider pause for the account (ERROR 2) met under one password: a restart with the same
settings waits it out, a restart after the operator changed them asks the provider again
(issue 21, friction 7: it stayed paused until `queue resume`)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.fakes import ReplyingProvider, wait_for
from tests.helpers import PASSWORD, message, smtplib_send, wait_state


def _refuse_login(got: Any) -> str:
    return f"ERROR = 2 (authorise error), ID - {got.relay_id}"


async def test_a_restart_with_changed_credentials_asks_the_provider_again(
    replying_relay: Any, relay_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="relay")
    fake, relay = await replying_relay(ReplyingProvider(answer=_refuse_login))
    port = relay.cfg.provider.port
    await asyncio.to_thread(smtplib_send, relay.port, message("first"))
    await wait_state(relay, "queued")
    await wait_for(lambda: relay.deliverer.pause_reason.startswith("provider ERROR 2"))
    cause = (await relay.spool.control())["pause_cause"]
    assert cause and PASSWORD not in cause  # a digest, never the password
    await relay.stop()

    # Restarted as it was: the pause is the provider's word on these settings, waited out.
    relay = await relay_factory(port)
    fake.relay_port = relay.port
    assert "event=delivery_paused_at_start" in caplog.text and "event=pause_lifted" not in caplog.text
    await wait_for(lambda: relay.deliverer.pause_reason.startswith("provider ERROR 2"))
    assert await relay.spool.claim(10, relay.clock()) == [] and len(fake.received) == 1
    await relay.stop()

    # The operator fixes the password and restarts: the relay asks again at once.
    fake.answer = None
    relay = await relay_factory(port, password="the-right-one")
    fake.relay_port = relay.port
    assert "event=pause_lifted" in caplog.text and "the provider settings changed" in caplog.text
    assert (await wait_state(relay, "confirmed"))["attempts"] == 2
    assert len(fake.received) == 2 and relay.deliverer.pause_reason == ""
    assert "pause_cause" not in await relay.spool.control()


async def test_a_funds_pause_has_no_config_cause(replying_relay: Any) -> None:
    """ERROR 3 is the balance, not the settings: no cause is kept (a restart waits it out)."""
    _fake, relay = await replying_relay(
        ReplyingProvider(answer=lambda got: f"ERROR = 3 (not enough money), ID - {got.relay_id}")
    )
    await asyncio.to_thread(smtplib_send, relay.port, message())
    await wait_for(lambda: relay.deliverer.pause_reason.startswith("provider ERROR 3"))
    assert (await relay.spool.control()).get("pause_cause") == ""
