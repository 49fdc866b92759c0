"""The pure core end to end: raw mail + envelope -> the exact provider mails.

The listener runs this on every DATA and `smsc-relay render` runs the same function, so the
dry run shows exactly what the daemon would send, and fails with the same reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.utils import getaddresses

from relay.config.schema import Config, Route
from relay.errors import ContentError, TooBigError
from relay.formatters import provider
from relay.model import Entry, InboundMail, ProviderMail, RouteMode, SmsRequest
from relay.parsers import inbound, mimescan
from relay.routing import Target, merge, resolve
from relay.storm import plan as storm
from relay.storm.pacing import Send
from relay.storm.plan import Alert, Digest, Outgoing, Window, build_digest, new_alert
from relay.summaries import describe
from relay.summaries.configured import recognisers

_NEVER = re.compile("(?!)")


@dataclass(frozen=True, slots=True)
class Rendered:
    mail: InboundMail
    requests: tuple[SmsRequest, ...]
    provider_mails: tuple[ProviderMail, ...]
    alerts: tuple[Alert, ...] = ()  # for routes with storm control: held, not sent as they come
    notes: tuple[str, ...] = ()  # what `render` and the log say: summary taken, text cut
    warnings: tuple[str, ...] = ()  # the same, but a human should look (logged as WARNING)


def notes_of(targets: Sequence[Target]) -> tuple[str, ...]:
    notes: list[str] = []
    for t in targets:
        if t.summary is not None:
            notes.append(f"route {t.route.name}: {describe(t.summary, t.text, t.shortened)}")
        if t.cut:
            budget = f"{t.route.max_parts} part(s)" if t.route.max_parts else "the provider's 1000 characters"
            notes.append(f"route {t.route.name}: text cut to fit {budget}")
    return tuple(dict.fromkeys(notes))


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
    mimescan.check(raw, max_depth=config.parsing.max_mime_depth, max_parts=config.parsing.max_mime_parts)
    mail = inbound.parse(raw, mail_from=mail_from, rcpt_tos=rcpt_tos, settings=config.parsing)
    targets, passthrough = resolve(mail, config.routes, config.aliases, new_id, recognisers(config.summaries))
    requests = merge([t for t in targets if t.route.storm is None], new_id) + passthrough
    # One alert per recipient of a storm route: they are merged later, with other mails' alerts.
    alerts = tuple(
        new_alert(
            new_id(),
            t.route.name,
            t.phones,
            t.text,
            t.route.storm,
            now.timestamp(),
            rcpt=t.rcpt,
            source=t.source,
            summary=t.summary,
        )
        for t in targets
        if t.route.storm is not None
    )
    if not requests and not alerts:
        raise ContentError("nothing to send: no recipient")
    mails = tuple(
        provider.build(r, config.provider, hostname=hostname, now=now, with_secret=with_secret)
        for r in requests
    )
    warnings = tuple(dict.fromkeys(w for t in targets for w in t.warnings))
    return Rendered(mail, tuple(requests), mails, alerts, notes_of(targets), warnings)


def digest_request(relay_id: str, name: str, route: Route | None, digests: Sequence[Digest]) -> SmsRequest:
    """One provider request for a storm route's digests: different texts to different phones go
    in one `::list` request."""
    route = route or Route(name, _NEVER)  # removed by a reload after its alerts were held: plain options
    return SmsRequest(
        relay_id=relay_id, mode=RouteMode.COMMAND, route=name, rcpt_tos=(),
        entries=tuple(Entry(d.phones, d.text) for d in digests),
        options=route.options, prefix=route.prefix, comment=route.comment, translit=route.translit,
    )  # fmt: skip


def storm_outgoing(
    held: Sequence[Alert],
    windows: Sequence[Window],
    history: Mapping[str, Sequence[Send]],
    *,
    now: float,
    config: Config,
    hostname: str,
    new_id: Callable[[], str],
) -> Outgoing:
    """A planner tick (storm.plan) and the provider request of each storm route's digests: the
    spool runs this inside the transaction that read `held`, `windows` and `history`."""
    plan = storm.plan(now, held, windows, history, config.storm_settings, new_id)
    routes = {r.name: r for r in config.routes}
    by_route: dict[str, list[Digest]] = {}
    for d in plan.digests:
        by_route.setdefault(d.route, []).append(d)
    stamp = datetime.fromtimestamp(now, UTC)
    requests = []
    for name, digests in by_route.items():
        request = digest_request(new_id(), name, routes.get(name), digests)
        mail = provider.build(request, config.provider, hostname=hostname, now=stamp, with_secret=False)
        requests.append((mail, tuple(digests)))
    return Outgoing(plan, tuple(requests), config.digest)


def preview_alerts(
    rendered: Rendered, *, config: Config, now: datetime, hostname: str
) -> tuple[ProviderMail, ...]:
    """The provider mail each held alert would become if nothing joined it (what `render`
    shows: a storm merges and paces them, so the daemon's real requests differ)."""
    routes = {r.name: r for r in config.routes}
    mails = []
    for a in rendered.alerts:
        route = routes[a.route]
        assert route.storm is not None
        request = digest_request(a.id, a.route, route, [build_digest(a.route, a.phones, [a], route.storm)])
        mails.append(provider.build(request, config.provider, hostname=hostname, now=now, with_secret=False))
    return tuple(mails)


def header_recipients(raw: bytes) -> list[str]:
    """To/Cc addresses of a mail: `render` uses them when no --to is given."""
    headers = BytesHeaderParser().parsebytes(raw)
    values = [str(v) for name in ("To", "Cc") for v in headers.get_all(name, [])]
    return [addr for _, addr in getaddresses(values) if addr]
