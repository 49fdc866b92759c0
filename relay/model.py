"""Frozen values passed between the stages of the pipeline, and the enums they use."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field


class RouteMode(enum.Enum):
    COMMAND = "command"  # build the provider's colon-delimited command line
    EMAIL2SMS = "email2sms"  # forward the text to <login>@send.smscentre.com
    PASSTHROUGH = "passthrough"  # the mail already holds a command line: validate and relay it


class TransportKind(enum.Enum):
    """How provider requests leave the relay (provider.transport)."""

    SMTP = "smtp"  # a command mail to the provider's SMTP gateway
    HTTP = "http"  # a send.php request to the provider's HTTP API
    SMPP = "smpp"  # submit_sm on a bound SMPP session


class SpoolBackend(enum.Enum):
    """Where the queue is kept (spool.backend)."""

    SQLITE = "sqlite"  # a file: one relay
    POSTGRESQL = "postgresql"  # a database shared by the relays of one account (docs/ha.md)


class BodySource(enum.Enum):
    TEXT_BLOCK = "text-block"  # a [text]...[/text] block
    PLAIN = "text/plain"
    HTML = "text/html"
    SUBJECT = "subject"  # no usable body: the subject alone
    NONE = "none"


class State(enum.Enum):
    """A spooled provider request's lifecycle (DESIGN.md section 4)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    DEFERRED = "deferred"
    EXPIRED = "expired"
    UNCONFIRMED = "unconfirmed"  # sent with test=1, but no provider reply in time: may not have gone out
    DUPLICATE = "duplicate"  # the provider refused it as a repeat within a minute (error 9)
    REPEAT = "repeat"  # not sent: the same text went to these phones within the provider's minute
    DRY_RUN = "dry-run"  # written to the outbox (provider.outbox): never sent, no reply to wait for
    # Delivery tracking (provider.track_delivery): the phones' statuses from status.php.
    DELIVERED = "delivered"  # every phone has a delivered status
    UNDELIVERED = "undelivered"  # some phone has a final failure status (error_code holds it)
    STATUS_UNKNOWN = "status-unknown"  # tracked for provider.track_timeout, never a final status
    # `queue hold`: kept in the spool, never claimed, never pruned, until `queue release`.
    HELD = "held"


class ReplyKind(enum.Enum):
    OK = "ok"
    ERROR = "error"
    UNKNOWN = "unknown"  # a mail to the reply address we could not read: kept, logged


class ReplyOutcome(enum.Enum):
    """What a provider reply did; stored with the reply (with a detail in brackets) and logged."""

    CONFIRMED = "confirmed"
    FAILED = "failed"
    DUPLICATE = "duplicate"
    QUEUED = "queued"  # errors 2/3: back in the queue, delivery paused
    DEFERRED = "deferred"  # error 4: the provider blocks us for a while
    UNKNOWN_ID = "unknown id"
    IGNORED = "ignored"  # the message had an outcome already: a repeated reply
    KEPT = "kept"  # unreadable, no id, or untrusted: stored, changes nothing

    @property
    def state(self) -> State | None:
        """The message state this outcome put its message in, if it moved one."""
        return _OUTCOME_STATES.get(self)

    @property
    def changed_nothing(self) -> bool:
        return self in (ReplyOutcome.UNKNOWN_ID, ReplyOutcome.KEPT)


_OUTCOME_STATES = {
    ReplyOutcome.CONFIRMED: State.CONFIRMED,
    ReplyOutcome.FAILED: State.FAILED,
    ReplyOutcome.DUPLICATE: State.DUPLICATE,
    ReplyOutcome.QUEUED: State.QUEUED,
    ReplyOutcome.DEFERRED: State.DEFERRED,
}


class AlertState(enum.Enum):
    """A storm route's alert (DESIGN.md section 4: the stage before `queued`)."""

    HELD = "held"  # committed before the 250, waiting for the planner
    SENT = "sent"  # went out in a provider request (its message_id)
    REPEAT = "repeat"  # a repeat inside a dedup window: only counted
    CANCELLED = "cancelled"  # a recovery came before the problem was sent (a flap)


class AlertKind(enum.Enum):
    PROBLEM = "problem"
    RECOVERY = "recovery"
    FOLLOWUP = "followup"  # "Repeated N more times ..." made when a dedup window closes


class Encoding(enum.Enum):
    """How the provider bills a text's characters."""

    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True, slots=True)
class ProviderReply:
    """One result line of a provider reply mail."""

    kind: ReplyKind
    relay_id: str = ""
    sms_count: int | None = None
    code: int | None = None
    description: str = ""
    line: str = ""  # the text it was read from
    cost: str = ""  # HTTP answers (cost=3): what the request cost, and the balance left, as given
    balance: str = ""


@dataclass(frozen=True, slots=True)
class PhoneStatus:
    """One phone's delivery status of one request, as status.php gave it."""

    relay_id: str
    phone: str
    status: int
    err: int = 0  # the reason of a failure status (the provider's code)
    at: float = 0.0  # when the provider last changed it (epoch seconds; 0: not given)


class Inbound(enum.Enum):
    """What a deliver_sm the provider's SMPP server pushed is."""

    RECEIPT = "receipt"  # a delivery receipt: the status of one part
    MALFORMED = "malformed"  # flagged a receipt, but without an id or status the relay reads
    SMS = "sms"  # not a receipt: an incoming SMS (a reply to the sender number)


@dataclass(frozen=True, slots=True)
class PartStatus:
    """One deliver_sm, read: for a receipt, the status of the part with the provider's
    `message_id` (its submit_sm_resp's), in the provider's codes (as status.php's)."""

    kind: Inbound
    digest: str  # a short printable form, kept when no part matches (and for the others)
    message_id: str = ""
    status: int = 0
    err: int = 0
    at: float = 0.0  # the receipt's `done date` (epoch seconds; 0: not given)


@dataclass(frozen=True, slots=True)
class Secret:
    """A password or API key: it prints as *** everywhere, on purpose."""

    value: str = field(repr=False)

    def __str__(self) -> str:
        return "***"

    def __repr__(self) -> str:
        return "Secret('***')"


@dataclass(frozen=True, slots=True)
class InboundMail:
    """What the inbound parser got out of one mail."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    text: str
    body_source: BodySource
    body: str = ""  # the chosen body as decoded, before cleanup (passthrough reads this)
    header_from: str = ""
    message_id: str = ""
    charset: str = ""
    received_count: int = 0
    warnings: tuple[str, ...] = ()
    link_labels: tuple[str, ...] = ()  # the HTML part's stand-alone links (buttons), for the summaries


class Role(enum.Enum):
    """What a piece of an alert summary says; the order of priority when a text must shrink."""

    STATE = "state"  # PROBLEM, CRITICAL, FIRING:2, RESOLVED, banned ...
    HOST = "host"  # the machine (or machines) it is about
    PROBLEM = "problem"  # the service, check, trigger or alert name
    VALUE = "value"  # the key measurement: 94.2 %, 812 MB, db01 96.1%, db02 93.0%
    DETAIL = "detail"  # the check output, description or message: the first to go
    NOTE = "note"  # what a forwarder wrote on top: only if room is left


@dataclass(frozen=True, slots=True)
class Piece:
    """One part of a summary's text. `sep` joins it to what stands before it."""

    role: Role
    text: str
    sep: str = " "


@dataclass(frozen=True, slots=True)
class AlertSummary:
    """What a monitoring mail says, as an on-call engineer needs it (relay/summaries/)."""

    recogniser: str  # which format: nagios, zabbix, alertmanager, ..., config:<name>, general
    pieces: tuple[Piece, ...]  # state, host, problem, value, detail: fitted by priority
    host: str
    identity: str  # the same for every mail about this alert: no state, times, values or ids
    recovery: bool  # the alert is over
    dropped: tuple[str, ...] = ()  # what the summary leaves out, for `render`
    alert: bool = True  # an alert: fitted to one part; False: mail only cleaned of boilerplate

    @property
    def text(self) -> str:
        return join(self.pieces)


_SAID_ONCE = (Role.STATE, Role.HOST, Role.PROBLEM, Role.VALUE)
_SEP_RANK = {": ": 4, "; ": 3, ", ": 2, " ": 1}


def join(pieces: tuple[Piece, ...] | list[Piece]) -> str:
    """A summary's text: its pieces in order, each state, host, problem or value said once. One
    that another piece says already (the host inside the problem name, the value inside the
    detail) is left out, and comes back by itself when a cut takes the other away."""
    kept: list[Piece] = []
    skipped_sep = ""  # a piece left out hands on a stronger separator (`head: detail`, not `head; detail`)
    for n, piece in enumerate(pieces):
        if not piece.text.strip():
            continue
        if piece.role in _SAID_ONCE:
            later = pieces[n + 1 :]
            # States and problem names repeat each other in any case (`CRITICAL`, `Critical`);
            # a host or value is hidden only by one that has it exactly (`i` is not `Info: I`),
            # and only these are hidden by the detail.
            heads = [p.text for p in kept if p.role not in (Role.NOTE, Role.DETAIL)] + [
                p.text for p in later if p.role in _SAID_ONCE and len(p.text) > len(piece.text)
            ]
            details = [p.text for p in (*kept, *later) if p.role is Role.DETAIL]
            exact = piece.role in (Role.HOST, Role.VALUE)
            if not exact:
                details = []
            if any(_says(o, piece.text, exact) for o in heads) or any(
                _says(o, piece.text, True) for o in details
            ):
                if _SEP_RANK.get(piece.sep, 0) > _SEP_RANK.get(skipped_sep, 0):
                    skipped_sep = piece.sep
                continue
        if skipped_sep and _SEP_RANK.get(skipped_sep, 0) > _SEP_RANK.get(piece.sep, 0):
            piece = Piece(piece.role, piece.text, skipped_sep)
        kept.append(piece)
        skipped_sep = ""
    return "".join((p.sep if n else "") + p.text for n, p in enumerate(kept)).strip()


def _says(text: str, part: str, exact: bool = False) -> bool:
    part = part.strip()
    if (part if exact else part.lower()) not in (text if exact else text.lower()):
        return False
    return re.search(rf"(?<!\w){re.escape(part)}(?!\w)", text, 0 if exact else re.IGNORECASE) is not None


@dataclass(frozen=True, slots=True)
class Options:
    """The provider's optional fields: `<time>,<tz>:<translit>,<format>,<sender>,<test>`."""

    time: str = ""
    tz: str = ""
    translit: str = ""
    format: str = ""
    sender: str = ""
    test: str = ""


@dataclass(frozen=True, slots=True)
class Entry:
    """One group of phones and the text they get (one line of the `::list` form)."""

    phones: tuple[str, ...]
    text: str


@dataclass(frozen=True, slots=True)
class SmsRequest:
    """One provider request, before formatting: who gets which text, with which options."""

    relay_id: str
    mode: RouteMode
    route: str
    rcpt_tos: tuple[str, ...]
    entries: tuple[Entry, ...]
    options: Options = field(default_factory=Options)
    prefix: str = ""  # message-type prefix such as "__VIBER__: "
    comment: str = ""  # unbilled comment after \n~~~\n, seen only in the account history
    translit: int = 0  # what the provider will do to the text, for part counting
    original_id: str = ""  # passthrough: the id the legacy mail asked for (the relay's replaces it)

    @property
    def phones(self) -> tuple[str, ...]:
        return tuple(p for e in self.entries for p in e.phones)


@dataclass(frozen=True, slots=True)
class Segments:
    """How the provider will bill a text: its encoding, length in that encoding, and parts."""

    encoding: Encoding
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    parts: int


@dataclass(frozen=True, slots=True)
class ProviderMail:
    """The exact mail to send upstream, plus what an operator needs to see about it."""

    relay_id: str
    mode: RouteMode
    route: str
    mail_from: str  # envelope sender upstream (the reply address)
    rcpt_to: str  # envelope recipient upstream
    message: bytes  # the full RFC 5322 message, CRLF line endings, with the real password
    masked: str  # the same message, byte for byte, but with the password shown as ***
    phones: tuple[str, ...]
    texts: tuple[str, ...]
    segments: Segments
    rcpt_tos: tuple[str, ...] = ()
    # True when the password in `message` is the configured one: the spool then keeps only
    # `masked`, and delivery puts the (current) configured credentials in at send time.
    keeps_config_secret: bool = False
    entries: tuple[Entry, ...] = ()  # who gets which text (empty for email2sms: the account decides)
