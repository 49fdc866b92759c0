"""The relay's Prometheus metrics: one registry per daemon, handed to each part that counts.

Counters move where things happen (listener, delivery, replies); queue depth is read from the
spool when scraped. relay/daemon/http.py serves them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

from relay import __version__

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("smsc_relay_mails_received", "Mails accepted (250) for SMS", registry=r)
        self.rejected = Counter(
            "smsc_relay_mails_rejected", "Mails or recipients refused, by reason", ["reason"], registry=r
        )
        self.requests = Counter(
            "smsc_relay_requests", "Provider requests reaching a state", ["state"], registry=r
        )
        self.provider_errors = Counter(
            "smsc_relay_provider_errors", "Provider ERROR replies by code", ["code"], registry=r
        )
        self.parts_sent = Counter("smsc_relay_sms_parts_sent", "SMS parts sent (parts x phones)", registry=r)
        self.alerts = Counter(
            "smsc_relay_storm_alerts", "Alerts of storm-controlled routes by what became of them at intake"
            " (held, repeat, cancelled)", ["state"], registry=r,
        )  # fmt: skip
        self.protected = Counter(
            "smsc_relay_phone_protected", "Requests the provider's per-phone limits held back (held) or"
            " counted instead of sending (repeat)", ["action"], registry=r,
        )  # fmt: skip
        self.queue = Gauge("smsc_relay_queue", "Spooled provider requests by state", ["state"], registry=r)
        self.paused = Gauge(
            "smsc_relay_delivery_paused", "1 while a provider error pauses delivery", registry=r
        )
        self.oldest_waiting = Gauge(
            "smsc_relay_oldest_waiting_seconds",
            "Age of the oldest message not yet with the provider (queued, deferred, sending); 0: none",
            registry=r,
        )
        self.spool_readable = Gauge(
            "smsc_relay_spool_readable",
            "1 when this scrape read the queue figures from the spool; 0: the spool did not answer"
            " in time, smsc_relay_queue is absent and the oldest-waiting age NaN (counters are current)",
            registry=r,
        )
        self.transport_sends = Counter(
            "smsc_relay_transport_sends", "Requests the provider took, by the way they went"
            " (smtp, http, smpp)", ["transport"], registry=r,
        )  # fmt: skip
        self.failover = Gauge(
            "smsc_relay_failover_active", "1 while mail goes over the HTTP API because the SMTP gateway"
            " cannot take it (provider.failover)", registry=r,
        )  # fmt: skip
        self.failovers = Counter(
            "smsc_relay_failovers", "Switches between the SMTP gateway and the HTTP API, by direction",
            ["to"], registry=r,
        )  # fmt: skip
        self.phone_statuses = Counter(
            "smsc_relay_delivery_statuses", "Final delivery statuses of phones (status.php codes;"
            " other: an undocumented one)", ["status"], registry=r,
        )  # fmt: skip
        self.status_polls = Counter(
            "smsc_relay_status_requests", "status.php list requests, by result (ok, error, limit)",
            ["result"], registry=r,
        )  # fmt: skip
        self.balance = Gauge(
            "smsc_relay_provider_balance", "The provider account's balance, from the last HTTP send"
            " (cost=3) or balance.php; NaN until known", registry=r,
        )  # fmt: skip
        self.balance.set(float("nan"))
        self.balance_low = Gauge(
            "smsc_relay_provider_balance_low", "1 while the balance is below provider.low_balance",
            registry=r,
        )  # fmt: skip
        self.build_info = Info("smsc_relay_build", "The running relay's version", registry=r)
        self.build_info.info({"version": __version__})
        self.accept_to_provider = Histogram(
            "smsc_relay_accept_to_provider_seconds", "From the client's 250 to the provider's 250",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.provider_to_confirmation = Histogram(
            "smsc_relay_provider_to_confirmation_seconds", "From the provider's 250 to its OK reply",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip

        self.smpp_bound = Gauge(
            "smsc_relay_smpp_sessions_bound", "SMPP sessions bound to the provider now"
            " (provider.transport: smpp; of provider.smpp.sessions)", registry=r,
        )  # fmt: skip
        self.smpp_inbound = Counter(
            "smsc_relay_smpp_deliver_sm", "deliver_sm the provider pushed, by kind (receipt,"
            " malformed, sms)", ["kind"], registry=r,
        )  # fmt: skip

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))
