"""provider.failover: SMTP first; what the SMTP gateway cannot take goes over the HTTP API.

"Cannot take" is the upstream's fault, not the message's: connection refused or reset, a
timeout, 421 (relay.errors.UpstreamUnavailable, SessionLost). That message goes over HTTP at once, and so
does all mail for the next `hold` seconds; then SMTP is tried again, and the first mail it
takes switches back. Both switches are logged (event=failover / event=failback) and counted
(smsc_relay_failovers{to}, smsc_relay_failover_active).

A timed-out SMTP attempt may have gone through: its HTTP send is marked uncertain, so the
HTTP transport first asks status.php whether the provider has that id (never two SMS).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from relay.delivery.http import HttpTransport
from relay.delivery.smtp import SmtpTransport
from relay.delivery.transport import Accepted, Outgoing
from relay.errors import SessionLost, UpstreamUnavailable
from relay.metrics import Metrics

log = logging.getLogger("relay.delivery")
HOLD = 60.0  # seconds on HTTP before SMTP is tried again


class FailoverState:
    """Shared by every worker: one switch for the relay, not one per connection."""

    def __init__(
        self, metrics: Metrics, *, hold: float = HOLD, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.metrics = metrics
        self.hold = hold
        self.clock = clock
        self.until = 0.0  # on HTTP until then
        self.active = False

    @property
    def use_http(self) -> bool:
        return self.active and self.clock() < self.until

    def smtp_failed(self, error: str) -> None:
        self.until = self.clock() + self.hold
        if not self.active:
            self.active = True
            self.metrics.failovers.labels("http").inc()
            self.metrics.failover.set(1)
            log.warning("event=failover to=http hold=%.0fs reason=%r", self.hold, error)

    def smtp_works(self) -> None:
        if self.active:
            self.active = False
            self.metrics.failovers.labels("smtp").inc()
            self.metrics.failover.set(0)
            log.warning("event=failback to=smtp note='the SMTP gateway takes mail again'")


class FailoverTransport:
    needs_credentials = True
    carries_mail = True  # the SMTP path signs and tags its mail as ever; HTTP reads the command

    def __init__(self, smtp: SmtpTransport, http: HttpTransport, state: FailoverState) -> None:
        self.smtp = smtp
        self.http = http
        self.state = state

    async def send(self, mail: Outgoing) -> Accepted:
        if self.state.use_http:
            return await self.http.send(mail)
        try:
            accepted = await self.smtp.send(mail)
        except (UpstreamUnavailable, SessionLost) as exc:
            self.state.smtp_failed(exc.text)
            log.warning("event=failover_send id=%s smtp_error=%r", mail.relay_id, exc.text)
            # A timeout may hide a mail the gateway took: HTTP asks status.php before sending.
            return await self.http.send(
                dataclasses.replace(
                    mail, uncertain=mail.uncertain or exc.uncertain or isinstance(exc, TimeoutError)
                )
            )
        self.state.smtp_works()
        return accepted

    async def close(self) -> None:
        await self.smtp.close()
        await self.http.close()
