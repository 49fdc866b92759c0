"""provider.failover: the configured way first; what it cannot take goes the other way.

Two pairs: transport smtp fails over to the HTTP API; transport smpp to the HTTP API or, with
`smpp.failover_to: smtp`, to the SMTP gateway. "Cannot take" is the upstream's fault, not the
message's: connection refused or reset, a timeout, 421, no SMPP session bound (relay.errors.
UpstreamUnavailable, SessionLost). That message goes the other way at once, and so does all mail
for the next `hold` seconds; then the first way is tried again, and the first mail it takes
switches back. Both switches are logged (event=failover / event=failback) and counted
(smsc_relay_failovers{to}, smsc_relay_failover_active).

A timed-out attempt may have gone through: its second send is marked uncertain, so the HTTP
transport first asks status.php whether the provider has that id (never two SMS).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from relay.delivery.transport import Accepted, Outgoing, Transport
from relay.errors import SessionLost, UpstreamUnavailable
from relay.metrics import Metrics

log = logging.getLogger("relay.delivery")
HOLD = 60.0  # seconds on the other way before the first is tried again


class FailoverState:
    """Shared by every worker: one switch for the relay, not one per connection."""

    def __init__(
        self, metrics: Metrics, *, hold: float = HOLD, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.metrics = metrics
        self.hold = hold
        self.clock = clock
        self.until = 0.0  # on the other way until then
        self.active = False

    @property
    def switched(self) -> bool:
        return self.active and self.clock() < self.until

    def failed(self, error: str, to: str) -> None:
        self.until = self.clock() + self.hold
        if not self.active:
            self.active = True
            self.metrics.failovers.labels(to).inc()
            self.metrics.failover.set(1)
            log.warning("event=failover to=%s hold=%.0fs reason=%r", to, self.hold, error)

    def works(self, back: str) -> None:
        if self.active:
            self.active = False
            self.metrics.failovers.labels(back).inc()
            self.metrics.failover.set(0)
            log.warning("event=failback to=%s note='the %s way takes mail again'", back, back)


class FailoverTransport:
    def __init__(
        self,
        first: Transport,
        other: Transport,
        state: FailoverState,
        names: tuple[str, str] = ("smtp", "http"),
    ) -> None:
        self.first = first
        self.other = other
        self.state = state
        self.names = names  # (first, other), for the log and the metric
        # The mail either way may take: with the password when one needs it, signed and tagged
        # when one carries it (the other reads the command from it all the same).
        self.needs_credentials = first.needs_credentials or other.needs_credentials
        self.carries_mail = first.carries_mail or other.carries_mail

    async def send(self, mail: Outgoing) -> Accepted:
        if self.state.switched:
            return await self.other.send(mail)
        try:
            accepted = await self.first.send(mail)
        except (UpstreamUnavailable, SessionLost) as exc:
            self.state.failed(exc.text, self.names[1])
            log.warning("event=failover_send id=%s %s_error=%r", mail.relay_id, self.names[0], exc.text)
            # A timeout may hide a mail the first way took: HTTP asks status.php before sending.
            return await self.other.send(
                dataclasses.replace(
                    mail, uncertain=mail.uncertain or exc.uncertain or isinstance(exc, TimeoutError)
                )
            )
        self.state.works(self.names[0])
        return accepted

    async def close(self) -> None:
        await self.first.close()
        await self.other.close()
