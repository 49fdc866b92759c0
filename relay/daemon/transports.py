"""The transport each delivery worker sends with, made from the config in force."""

from __future__ import annotations

from relay.config.current import Current
from relay.config.schema import Config
from relay.delivery.failover import FailoverState, FailoverTransport
from relay.delivery.http import ApiClient, HttpTransport
from relay.delivery.outbox import OutboxTransport
from relay.delivery.smtp import SmtpTransport
from relay.delivery.transport import Transport
from relay.model import TransportKind


class Transports:
    def __init__(self, current: Current, api: ApiClient, failover: FailoverState, hostname: str) -> None:
        self.current = current
        self.api = api  # one HTTP client for the relay (the workers, tracking and the balance)
        self.failover = failover  # shared by the workers: one SMTP outage, one switch
        self.hostname = hostname

    def new(self) -> Transport:
        """One per delivery worker, from the config in force."""
        p, d = self.current.config.provider, self.current.config.delivery
        if p.outbox is not None:
            return OutboxTransport(p.outbox)
        if p.transport is TransportKind.HTTP:
            return HttpTransport(self.api)
        smtp = SmtpTransport(
            p.hosts, p.port, timeout=d.timeout, starttls=d.starttls, local_hostname=self.hostname
        )
        if p.failover:
            return FailoverTransport(smtp, HttpTransport(self.api), self.failover)
        return smtp


def settings(cfg: Config) -> tuple[object, ...]:
    p, d = cfg.provider, cfg.delivery
    return (p.outbox, p.hosts, p.port, d.timeout, d.starttls, p.transport, p.failover)


def mode(cfg: Config) -> str:
    """How requests leave, for the log: the outbox, the SMTP gateway, the HTTP API."""
    p = cfg.provider
    if p.outbox:
        return f"dry-run outbox={p.outbox}"
    if p.transport is TransportKind.HTTP:
        return "transport=http api=" + ",".join(p.api_urls)
    failover = " failover=http api=" + ",".join(p.api_urls) if p.failover else ""
    return "transport=smtp provider=" + ",".join(p.hosts) + failover
