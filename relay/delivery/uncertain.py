"""The no-double-send rule for a request an earlier attempt may have made (a timeout after it was
written, a lost session, an answer that could not be read): before it goes again, the provider is
asked by the relay's id (status.php), a phone at a time; a request it knows is not sent again.
The HTTP transport asks here, and the SMPP transport when the relay uses the HTTP API.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from relay import fields, provider_errors
from relay.delivery.transport import Accepted
from relay.errors import UpstreamDeferred, UpstreamUnavailable
from relay.formatters import api
from relay.model import ProviderReply, ReplyKind, TransportKind
from relay.parsers import api as answers
from relay.parsers import command

if TYPE_CHECKING:
    from relay.delivery.http import ApiClient

log = logging.getLogger("relay.delivery")
PROVIDER_MINUTE = 61.0  # seconds: past the provider's one-minute window for identical requests
MAX_STATUS_PHONES = 5  # status.php answers no more than five requests per message per minute


async def registered(client: ApiClient, request: command.Command) -> Accepted | None:
    """The provider's answer for a request an earlier attempt may have made: an OK when
    status.php knows it, None when it does not (it is safe to send)."""
    phones = [p for p in api.phones_of(request) if not fields.GROUP.fullmatch(p)][:MAX_STATUS_PHONES]
    if not phones:
        # Groups only: status.php cannot be asked by phone. Sent again after the minute,
        # when an identical request is no longer refused: a duplicate is possible, and logged.
        log.warning(
            "event=uncertain_resend id=%s note='group recipients cannot be checked'", request.request_id
        )
        return None
    pairs = [(request.request_id, p) for p in phones]
    try:
        # One request a phone in the single form, not one list request: the provider takes one
        # list request a minute in all, so after a crash with N requests uncertain, N lists
        # would take N minutes; it takes five single requests a minute for each message.
        found = [s for pair in pairs for s in await client.statuses([pair], listed=False)]
    except answers.StatusError as exc:
        raise UpstreamDeferred(
            f"may have been sent; status.php answered {exc}: asked again after a minute",
            uncertain=True,
            retry_after=PROVIDER_MINUTE,
        ) from None
    except (UpstreamUnavailable, UpstreamDeferred) as exc:
        raise UpstreamDeferred(f"may have been sent; status.php: {exc.text}", uncertain=True) from None
    known = [s for s in found if s.status != provider_errors.NOT_FOUND]
    if not known:
        return None
    words = ", ".join(f"{s.phone}: {s.status} ({provider_errors.status_meaning(s.status)})" for s in known)
    log.warning("event=already_registered id=%s statuses=%r", request.request_id, words)
    reply = ProviderReply(ReplyKind.OK, request.request_id, line=f"status.php: {words}")
    return Accepted(f"registered by an earlier attempt: {words}", answer=reply, via=TransportKind.HTTP)
