"""The pure core end to end: raw mail + envelope -> the exact provider mails.

The listener runs this on every DATA and `smsc-relay render` runs the same function, so the
dry run shows exactly what the daemon would send, and fails with the same reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from relay.config import Config
from relay.errors import ContentError, TooBigError
from relay.formatters import provider
from relay.model import InboundMail, ProviderMail, SmsRequest
from relay.parsers import inbound
from relay.routing import merge, resolve
from relay.storm import Alert, new_alert


@dataclass(frozen=True, slots=True)
class Rendered:
    mail: InboundMail
    requests: tuple[SmsRequest, ...]
    provider_mails: tuple[ProviderMail, ...]
    alerts: tuple[Alert, ...] = ()  # for routes with storm control: held, not sent as they come


def render(
    raw: bytes,
    *,
    mail_from: str,
    rcpt_tos: Sequence[str],
    config: Config,
    new_id: Callable[[], str],
    now: datetime,
    hostname: str,
    with_secret: bool = True,
) -> Rendered:
    if len(raw) > config.listen.max_message_size:
        raise TooBigError(f"message is {len(raw)} bytes; this relay accepts {config.listen.max_message_size}")
    mail = inbound.parse(raw, mail_from=mail_from, rcpt_tos=rcpt_tos, settings=config.parsing)
    targets, passthrough = resolve(mail, config.routes, config.aliases, new_id)
    requests = merge([t for t in targets if t.route.storm is None], new_id) + passthrough
    # One alert per recipient of a storm route: they are merged later, with other mails' alerts.
    alerts = tuple(
        new_alert(new_id(), t.route.name, t.phones, t.text, t.route.storm, now.timestamp())
        for t in targets
        if t.route.storm is not None
    )
    if not requests and not alerts:
        raise ContentError("nothing to send: no recipient")
    mails = tuple(
        provider.build(r, config.provider, hostname=hostname, now=now, with_secret=with_secret)
        for r in requests
    )
    return Rendered(mail, tuple(requests), mails, alerts)


def header_recipients(raw: bytes) -> list[str]:
    """To/Cc addresses of a mail: `render` uses them when no --to is given."""
    headers = BytesHeaderParser().parsebytes(raw)
    values = [str(v) for name in ("To", "Cc") for v in headers.get_all(name, [])]
    return [addr for _, addr in getaddresses(values) if addr]
