"""The provider's SMPP interface as a transport (issue 24): each request as submit_sm PDUs on the
relay's one bound session (smpp_session.py), the answers the provider's word at once, applied
like a reply mail by delivery (as the HTTP API's are).

The request is the command line the spool keeps, read back as the HTTP transport reads it, so
`render`, the mail gateway, the HTTP API and SMPP cannot disagree about what is sent; its parts
are relay/formatters/smpp.py's. All parts of a request go at once, within the session's window,
so they reach the provider well within its minute for the parts of one message.

What the answers mean is relay/provider_errors.smpp_status's: every part taken is an OK; a status
that is a provider error is that error's answer (it fails the message, or pauses delivery, as the
other transports' do); a throttled part is sent again (the session slows down) a few times before
the request is deferred; a lost session or a system error with parts out leaves the request
uncertain: before it goes again, status.php is asked when the HTTP API is configured
(relay/delivery/uncertain.py), else it goes again only after the provider's minute.

Each part's provider message id goes back with the answer (Accepted.parts), so that delivery
keeps it for the part's receipt (relay/delivery/receipts.py). The relay's sessions are the
daemon's (relay/daemon/smpp.py); a request goes on the next bound one.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from relay.delivery.smpp_session import SmppSession, SubmitAnswer
from relay.delivery.transport import Accepted, Outgoing
from relay.delivery.uncertain import PROVIDER_MINUTE, registered
from relay.errors import ContentError, DeliveryError, UpstreamDeferred, UpstreamRefused
from relay.formatters import mime, smpp
from relay.model import ProviderReply, ReplyKind, TransportKind
from relay.parsers import command
from relay.provider_errors import SmppAnswer, smpp_rule, smpp_status

if TYPE_CHECKING:
    from relay.delivery.http import ApiClient

log = logging.getLogger("relay.delivery")
THROTTLE_TRIES = 5  # sends of one part that the SMSC throttles before the request is deferred


class SmppTransport:
    needs_credentials = False  # the session binds with the provider login; no password is sent
    carries_mail = False

    def __init__(
        self,
        session: SmppSession | Callable[[], SmppSession],
        api: ApiClient | None = None,
        *,
        source_ton: int = 5,
        source_npi: int = 0,
        dest_ton: int = 1,
        dest_npi: int = 1,
        poll_after: float = math.inf,
    ) -> None:
        # One session, or a chooser among the relay's (the next bound one)
        self.pick = session if callable(session) else lambda: session
        self.api = api  # status.php for an uncertain request, when the HTTP API is configured
        self.source_ton, self.source_npi = source_ton, source_npi
        self.dest_ton, self.dest_npi = dest_ton, dest_npi
        self.poll_after = poll_after  # status.php for a phone whose receipt did not come (inf: never)

    async def send(self, mail: Outgoing) -> Accepted:
        try:
            request = command.parse(mime.body_text(mail.message))
            parts = smpp.submits(
                request, source_ton=self.source_ton, source_npi=self.source_npi,
                dest_ton=self.dest_ton, dest_npi=self.dest_npi,
            )  # fmt: skip
        except (ContentError, ValueError) as exc:  # not a command line (email2sms), or too long
            raise UpstreamRefused(f"cannot be sent over SMPP: {exc}") from None
        if mail.uncertain:
            if self.api is not None:
                known = await registered(self.api, request)
                if known is not None:
                    return known
                note = "status.php does not know it"  # (it may not know SMPP requests by our id)
            else:  # past the provider's minute: a failure deferred it so, a restart held it so
                note = "no HTTP API to ask"
            log.warning("event=uncertain_resend id=%s note=%r", request.request_id, note)
        session = self.pick()  # every part of a request on one session: one minute, one window
        results = await asyncio.gather(*(self._submit(session, p) for p in parts), return_exceptions=True)
        taken = [r for r in results if isinstance(r, SubmitAnswer) and r.status == 0]
        failed = next((r for r in results if isinstance(r, BaseException)), None)
        if failed is not None:
            if not isinstance(failed, DeliveryError):
                raise failed
            if not taken and not failed.uncertain:
                # Nothing went out (no session bound): the upstream's fault, as a refused
                # connection is; with provider.failover the message goes the other way now.
                raise failed
            raise UpstreamDeferred(
                f"SMPP: {failed.text}; {len(taken)} of {len(parts)} part(s) taken",
                uncertain=bool(taken) or failed.uncertain,
                retry_after=PROVIDER_MINUTE if (taken or failed.uncertain) else 0.0,
            )
        refused = next((r for r in results if isinstance(r, SubmitAnswer) and r.status != 0), None)
        if refused is not None:
            status = smpp_status(refused.status)
            if status.answer is not SmppAnswer.PROVIDER:
                raise UpstreamDeferred(
                    f"SMPP {status.name}; {len(taken)} of {len(parts)} part(s) taken",
                    uncertain=bool(taken),
                    retry_after=PROVIDER_MINUTE if taken else 0.0,
                )
            rule = smpp_rule(status)
            reply = ProviderReply(
                ReplyKind.ERROR, request.request_id, code=status.code if status.code > 0 else None,
                description=rule.meaning, line=f"submit_sm_resp {status.name}",
            )  # fmt: skip
            return Accepted(f"SMPP: {status.name} ({rule.meaning})", answer=reply, via=TransportKind.SMPP)
        ids = " ".join(r.message_id for r in taken)
        reply = ProviderReply(
            ReplyKind.OK, request.request_id, sms_count=len(parts), line=f"submit_sm_resp message_id {ids}"
        )
        return Accepted(
            f"SMPP: {len(parts)} part(s) taken, message_id {ids}", answer=reply, via=TransportKind.SMPP,
            parts=tuple((p.phone, r.message_id) for p, r in zip(parts, taken, strict=True)),
            poll_after=self.poll_after,
        )  # fmt: skip

    async def _submit(self, session: SmppSession, part: smpp.Submit) -> SubmitAnswer:
        """One part; a throttled one again (the session holds every submit for a growing pause)."""
        for _ in range(THROTTLE_TRIES):
            answer = await session.submit(part)
            if not answer.status or smpp_status(answer.status).answer is not SmppAnswer.THROTTLE:
                return answer
        return answer

    async def close(self) -> None:
        return None  # the session is the relay's, shared by every worker
