"""The transport each delivery worker sends with, made from the config in force."""

from __future__ import annotations

import math

from relay.config.current import Current
from relay.config.schema import MAX_API_CONCURRENCY, Config
from relay.daemon.smpp import SmppLink
from relay.delivery.failover import FailoverState, FailoverTransport
from relay.delivery.http import ApiClient, HttpTransport
from relay.delivery.outbox import OutboxTransport
from relay.delivery.smpp import SmppTransport
from relay.delivery.smtp import SmtpTransport
from relay.delivery.transport import Transport
from relay.model import TransportKind


class Transports:
    def __init__(
        self, current: Current, api: ApiClient, failover: FailoverState, hostname: str, smpp: SmppLink
    ) -> None:
        self.current = current
        self.api = api  # one HTTP client for the relay (the workers, tracking and the balance)
        self.failover = failover  # shared by the workers: one outage, one switch
        self.hostname = hostname
        self.smpp = smpp  # the relay's SMPP sessions, shared by the workers

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
        if p.transport is TransportKind.SMPP:
            s = p.smpp
            # status.php for an uncertain request only where the operator uses the HTTP API
            # (failover, tracking, the balance): a relay on SMPP alone makes no HTTP request.
            first = SmppTransport(
                self.smpp.pick, self.api if p.uses_api else None,
                source_ton=s.source_ton, source_npi=s.source_npi, dest_ton=s.dest_ton, dest_npi=s.dest_npi,
                poll_after=s.receipt_wait if p.track_delivery else math.inf,
            )  # fmt: skip
            if not p.failover:
                return first
            if s.failover_to is TransportKind.SMTP:
                return FailoverTransport(first, smtp, self.failover, ("smpp", "smtp"))
            return FailoverTransport(first, HttpTransport(self.api), self.failover, ("smpp", "http"))
        if p.failover:
            return FailoverTransport(smtp, HttpTransport(self.api), self.failover)
        return smtp


def workers(cfg: Config) -> int:
    """Delivery workers: delivery.concurrency, and with SMPP at least enough to fill every
    session's window (a worker sends one request at a time: fewer would leave the window idle),
    but no more than the HTTP API takes when failover goes there."""
    p, d = cfg.provider, cfg.delivery
    if p.transport is not TransportKind.SMPP or p.outbox is not None:
        return d.concurrency
    wanted = max(d.concurrency, p.smpp.window * p.smpp.sessions)
    if p.failover and p.smpp.failover_to is TransportKind.HTTP:
        wanted = min(wanted, max(d.concurrency, MAX_API_CONCURRENCY))
    return wanted


def settings(cfg: Config) -> tuple[object, ...]:
    p, d = cfg.provider, cfg.delivery
    return (
        p.outbox,
        p.hosts,
        p.port,
        d.timeout,
        d.starttls,
        p.transport,
        p.failover,
        p.smpp,
        p.track_delivery,
    )


def mode(cfg: Config) -> str:
    """How requests leave, for the log: the outbox, the SMTP gateway, the HTTP API, SMPP."""
    p = cfg.provider
    if p.outbox:
        return f"dry-run outbox={p.outbox}"
    if p.transport is TransportKind.HTTP:
        return "transport=http api=" + ",".join(p.api_urls)
    if p.transport is TransportKind.SMPP:
        s = p.smpp
        hosts = ",".join(f"{h}:{port}" for h, port in s.hosts)
        way = (
            "smtp provider=" + ",".join(p.hosts)
            if s.failover_to is TransportKind.SMTP
            else "http api=" + ",".join(p.api_urls)
        )
        failover = f" failover={way}" if p.failover else ""
        return f"transport=smpp smsc={hosts} tls={'yes' if s.tls else 'no'} sessions={s.sessions}{failover}"
    failover = " failover=http api=" + ",".join(p.api_urls) if p.failover else ""
    return "transport=smtp provider=" + ",".join(p.hosts) + failover
