"""What a starting relay decides from the spool a previous run left: whether a provider pause
is still owed, and when the requests a crash cut off may go again."""

from __future__ import annotations

import logging
import time

from relay.config.schema import Config
from relay.delivery.uncertain import PROVIDER_MINUTE
from relay.model import TransportKind
from relay.spool import interface as spool
from relay.spool.interface import Control, Messages

log = logging.getLogger("relay.daemon")


async def pause_lifted(control_spool: Control, cause_now: str) -> bool:
    """Whether a pause the provider's ERROR 2 started is to be lifted: it was started under
    other settings than these (the operator changed the password, the login, the way out and
    restarted), so the next message asks the provider again. One under the same settings is
    waited out."""
    control = await control_spool.control()
    until, cause = float(control.get("paused_until", "0")), control.get(spool.PAUSE_CAUSE, "")
    if until <= time.time() or not cause:
        return False
    reason = control.get("pause_reason", "")
    if cause == cause_now:
        log.warning("event=delivery_paused_at_start reason=%r note=%r", reason,
                    "the provider settings are those it met; `queue resume` lifts it")  # fmt: skip
        return False
    log.warning("event=pause_lifted reason=%r note=%r", reason,
                "the provider settings changed since: asking the provider again")  # fmt: skip
    return True


async def hold_recovered(messages: Messages, cfg: Config) -> None:
    """SMPP without the HTTP API has no status.php to ask whether a request the crash cut off
    went out: it is sent again only after the provider's minute (within it the provider would
    refuse the identical request, and the message would fail though it may have gone out); the
    resend is logged (event=uncertain_resend)."""
    p = cfg.provider
    if p.transport is TransportKind.SMPP and not p.uses_api and p.outbox is None:
        held = await messages.hold_uncertain(time.time() + PROVIDER_MINUTE)
        log.warning("event=uncertain_held rows=%d seconds=%.0f", held, PROVIDER_MINUTE)
