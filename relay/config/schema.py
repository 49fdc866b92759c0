"""The config as frozen, typed values: every option and its one default (pure, no I/O).

relay/config/load.py reads YAML into these; everything else takes them as they are. A default
is written here once; the loader asks the dataclass for it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay.model import Options, RouteMode, Secret, SpoolBackend, TransportKind

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_PROVIDER_HOST = "send.smscentre.com"
DEFAULT_PROVIDER_ADDRESS = "send@send.smscentre.com"
DEFAULT_API_URL = "https://smsc.ru/sys/"
# The provider answers error 9 to 15 concurrent requests under one login: the workers, the
# delivery tracker and the balance check together stay below that.
MAX_API_CONCURRENCY = 12
DEFAULT_SPOOL = Path("/var/lib/smsc-relay/spool.db")
# The provider's charset for command mails, and what undeclared 8-bit mail is read as (the
# provider's SMTP page: koi8-r when the mail declares none).
DEFAULT_CHARSET = "koi8-r"
REPLY_DKIM_DOMAINS = ("smsc.ru", "smscentre.com")


def default(cls: type, name: str) -> Any:
    """The default of one field of a config dataclass, as written in its definition."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


@dataclass(frozen=True, slots=True)
class DkimKey:
    """provider.dkim: who signs provider mail (relay/delivery/dkim.py does the signing)."""

    domain: str
    selector: str
    key: bytes = field(repr=False)  # PEM private key


@dataclass(frozen=True, slots=True)
class StormSettings:
    """A route's `storm:` section (config/relay.example.yaml documents each key)."""

    dedup_window: float = 300.0
    hold: float = 20.0  # an alert to phones busy with a storm waits this long for others to join it
    first_hold: float = 3.0  # an alert to phones idle for min_gap + hold: a flap can still cancel it
    urgent: bool = False
    min_gap: float = 30.0
    burst: int = 40
    max_parts: int = 3
    recovery: re.Pattern[str] | None = None
    alert_key: re.Pattern[str] | None = None
    quiet_hours: tuple[int, int] | None = None  # (from, to) hours: nothing is sent from..to
    quiet_tz: str = ""  # a zoneinfo name; "": the server's local time
    translit: int = 0


# Message-type prefixes of the provider (SMTP page): written at the start of the text.
PREFIXES = {
    "sms": "",
    "call": "__CALL__: ",
    "viber": "__VIBER__: ",
    "soc": "__SOC__: ",
    "mail": "__MAIL__: ",
    "bot": "__BOT__: ",
    "ping": "__PING__",  # no text: the prefix is the whole message
    "hlr": "__HLR__",
}
TEMPLATE_FIELDS = frozenset({"subject", "text", "from", "to", "summary"})
MAX_PARTS_LIMIT = 15  # 1000 characters of UCS-2 are 15 parts of 67


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    recipient: re.Pattern[str]
    mode: RouteMode = RouteMode.COMMAND
    sender_match: re.Pattern[str] | None = None
    subject_match: re.Pattern[str] | None = None
    phones: tuple[str, ...] = ()
    options: Options = field(default_factory=Options)
    message_type: str = "sms"
    comment: str = ""
    template: str | None = None  # None: "{subject}\n{text}", without repeating the subject
    max_parts: int = 0
    marker: str = "..."
    storm: StormSettings | None = None  # alert-storm control (relay/storm/); None: send each mail
    summary: bool = True  # `summary: auto`: a monitoring mail a recogniser knows becomes its summary

    @property
    def prefix(self) -> str:
        return PREFIXES[self.message_type]

    @property
    def translit(self) -> int:
        return int(self.options.translit or 0)


@dataclass(frozen=True, slots=True)
class ListenConfig:
    host: str = "127.0.0.1"
    port: int = 2525
    networks: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    # Inbound mail may carry attachments we ignore (a printer's PDF): far above the provider's
    # 100 KB, which applies to the mail we send, not to the mail we receive.
    max_message_size: int = 2 * 1024 * 1024
    max_recipients: int = 50
    hostname: str = ""
    max_connections: int = 100  # more get 421 4.7.0 at connect (aiosmtpd has no cap of its own)
    max_connections_per_address: int = 20  # one client address may hold no more than this
    # Clients outside `networks` (only the reply address is theirs) share at most this many
    # slots, so that they can never lock the trusted ones out. 0: a quarter of max_connections.
    untrusted_connections: int = 0
    untrusted_connections_per_address: int = 2  # the provider's reply server needs one at a time
    # An untrusted session that has not said MAIL this long after connecting (or after its
    # last mail) is closed: an idle attacker cannot keep the reply address's slots.
    untrusted_mail_timeout: float = 10.0
    idle_timeout: float = 300.0  # seconds a client may stay silent (RFC 5321 asks for >= 5 min)
    command_call_limit: int = 100  # then 421: a client looping on NOOP/HELP is cut off
    tls_cert: Path | None = None  # with tls_key: offer STARTTLS
    tls_key: Path | None = None
    require_tls: bool = False  # no MAIL before STARTTLS
    users: Mapping[str, str] = field(default_factory=dict)  # AUTH users (from auth.users_file)
    auth_required: bool = False  # even clients in `networks` must authenticate


@dataclass(frozen=True, slots=True)
class SmppConfig:
    """provider.smpp (transport: smpp): the provider's SMPP server and what its sessions send.
    The defaults are the provider's connection page's (shared/provider-docs/smpp-notes.md)."""

    host: str = "smpp.smscentre.com"
    port: int = 3700  # 3443 with tls
    tls: bool = False
    backup_host: str = "smpp2.smscentre.com"  # "": none; same port
    system_type: str = ""
    sessions: int = 1  # transceiver sessions this relay keeps bound
    window: int = 10  # submits waiting for their responses per session (the provider allows 300)
    # The longest a session may go without traffic; smpp34 sends enquire_link every 30 s of its
    # own (not settable), so this is a bound checked against the provider's 2 minutes.
    enquire_link: float = 30.0
    bind_timeout: float = 10.0
    source_ton: int = 5  # an alphanumeric sender (a numeric one always goes as TON 1 / NPI 1)
    source_npi: int = 0
    dest_ton: int = 1
    dest_npi: int = 1
    validity: int = 1440  # minutes the SMSC keeps trying (the provider's example: a day)
    receipt_wait: float = 600.0  # no receipt this long: status.php is asked (track_delivery)
    failover_to: TransportKind = TransportKind.HTTP  # provider.failover: where mail goes unbound

    @property
    def hosts(self) -> tuple[tuple[str, int], ...]:
        """Where to bind: the main host, then the backup."""
        return ((self.host, self.port),) + (((self.backup_host, self.port),) if self.backup_host else ())


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    password: Secret
    hosts: tuple[str, ...] = (DEFAULT_PROVIDER_HOST,)
    port: int = 25
    address: str = DEFAULT_PROVIDER_ADDRESS
    login: str = ""
    charset: str = DEFAULT_CHARSET
    test: bool = True
    reply_address: str = ""
    outbox: Path | None = None
    email2sms_domain: str = DEFAULT_PROVIDER_HOST
    confirm_timeout: float = 900.0  # test=1: `sent` this long without a reply -> `unconfirmed`
    pause_interval: float = 3600.0  # errors 2/3 (login, funds) pause delivery this long, or until resumed
    block_backoff: float = 600.0  # error 4 (IP blocked for a while) holds the whole queue this long
    dkim: DkimKey | None = None  # sign provider mail
    reply_tags: bool = True  # trust a reply only at the return path tagged for its message id
    phone_limits: bool = True  # every route: no same text to a phone within a minute, no 50th short-gap SMS
    verify_replies: bool = False  # apply a reply only if DKIM-signed by one of reply_dkim_domains
    reply_dkim_domains: tuple[str, ...] = REPLY_DKIM_DOMAINS
    reply_rate_limit: int = 120  # mails a minute to the reply address from one untrusted address
    transport: TransportKind = TransportKind.SMTP
    api_urls: tuple[str, ...] = (DEFAULT_API_URL,)  # api_url, then api_mirrors, tried in order
    failover: bool = False  # transport smtp: what the SMTP gateway cannot take goes over HTTP
    track_delivery: bool = False  # poll status.php until each phone's status is final
    track_timeout: float = 93600.0  # the SMS lifetime (at most 24 h) and a margin: then status-unknown
    low_balance: float = 0.0  # warn below this balance; 0: never
    smpp: SmppConfig = SmppConfig()

    @property
    def uses_api(self) -> bool:
        """Whether the relay talks to the HTTP API at all (else it never makes a request there)."""
        smpp_to_smtp = self.transport is TransportKind.SMPP and self.smpp.failover_to is TransportKind.SMTP
        return (
            self.transport is TransportKind.HTTP
            or (self.failover and not smpp_to_smtp)
            or self.track_delivery
            or self.low_balance > 0
        )

    @property
    def tracking(self) -> bool:
        """Whether delivery tracking runs: status.php polling, or SMPP's receipts (always
        followed; their end, without one, is status-unknown)."""
        return self.track_delivery or self.transport is TransportKind.SMPP

    def tracked_for(self, via: TransportKind) -> float | None:
        """How long a request sent by `via` is tracked, or None: not at all (nor in a dry run)."""
        tracked = self.track_delivery or via is TransportKind.SMPP
        return self.track_timeout if tracked and self.outbox is None else None

    @property
    def api_key(self) -> bool:
        """An empty login means the password is an API key (sent as `apikey`)."""
        return not self.login

    @property
    def test_flag(self) -> str:
        return "1" if self.test else "0"


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    concurrency: int = 2  # connections to the provider, each reused for many messages
    timeout: float = 60.0  # per SMTP command and per HTTP request to the provider
    starttls: str = "auto"  # auto: when offered; require: never send in the clear; off
    min_backoff: float = 30.0
    max_backoff: float = 3600.0
    max_age: float = 86400.0  # then a message that still could not be sent expires
    shutdown_timeout: float = 20.0  # SIGTERM: in-flight sessions and sends get this long


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9465


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    smarthost: str  # where notices to original senders are handed over (a local MTA)
    port: int = 25
    sender: str = ""  # the From: of notices; the envelope sender is always <>
    operator: str = ""  # where notices for the operator go (low balance); "": logged only


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    path: Path = DEFAULT_SPOOL  # the SQLite file (backend: sqlite)
    keep_days: int = 30  # finished messages and provider replies are deleted after this
    backend: SpoolBackend = SpoolBackend.SQLITE
    dsn: Secret = field(
        default_factory=lambda: Secret("")
    )  # backend: postgresql; it may hold the database password
    relay_name: str = ""  # this relay's name among those sharing the database; "": hostname:port
    lease: int = 60  # seconds another relay waits for a silent relay's claims (renewed every lease/3)
    # Each message keeps the mail it was made from, up to this size, so that `queue retry`
    # renders it again under the config in force; 0 keeps none (a retry sends what is stored).
    keep_mail: int = 256 * 1024
    # backend: postgresql; seconds a mail waits for an unreachable database before its 451
    outage_reply: int = 5


@dataclass(frozen=True, slots=True)
class ParsingConfig:
    undeclared_charset: str = DEFAULT_CHARSET
    detect_utf8: bool = True
    strip_signature: bool = True
    strip_quotes: bool = True
    boilerplate: tuple[re.Pattern[str], ...] = ()
    # Checked before the parser reads the mail (parsers/mimescan.py): then 554 5.6.0.
    max_mime_depth: int = 20  # multiparts within multiparts; a forwarded mail nests 3 or 4
    max_mime_parts: int = 1000


SUMMARY_GROUPS = frozenset({"host", "state", "problem", "value", "detail"})


@dataclass(frozen=True, slots=True)
class SummaryRule:
    """An operator's own alert format (`summaries:`): patterns whose named groups say where the
    host, state, problem, value and detail are; every pattern given must match."""

    name: str
    sender: re.Pattern[str] | None = None  # envelope sender or From:
    subject: re.Pattern[str] | None = None
    body: re.Pattern[str] | None = None  # searched line by line (re.MULTILINE)
    template: str | None = None  # `{state} {host} {problem}: {value}`; default: that order
    recovery: re.Pattern[str] | None = None  # on the state: the alert is over


@dataclass(frozen=True, slots=True)
class Config:
    provider: ProviderConfig
    routes: tuple[Route, ...]
    listen: ListenConfig = ListenConfig()
    spool: SpoolConfig = SpoolConfig()
    parsing: ParsingConfig = ParsingConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    notify: NotifyConfig | None = None  # tell original senders of permanent failures
    metrics: MetricsConfig | None = None  # Prometheus /metrics and /health
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = "config"
    summaries: tuple[SummaryRule, ...] = ()  # configured recognisers, tried before the built-in ones
    # The first 12 hex digits of the file's SHA-256 (`sha256sum relay.yaml`): each message
    # records the config it was rendered with, `queue show` compares it with the one in force.
    digest: str = ""

    def storm_settings(self, route: str) -> StormSettings:
        """A route's storm settings by name; a route removed by a reload gets the defaults, so
        what it held still goes out."""
        for r in self.routes:
            if r.name == route and r.storm is not None:
                return r.storm
        return StormSettings()
