"""InboundMail + routes -> SmsRequests: which phones get which text, with which options.

Rules are tried in order and the first whose recipient, sender and subject patterns all match
wins. Recipients whose requests would carry the same options are merged into one request: one
text for all phones, or the `::list` form when texts differ per phone group.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from relay import fields, summaries
from relay.config.schema import Route
from relay.errors import AddressError, ContentError, LoopError, NoRouteError
from relay.formatters import command, segments
from relay.model import (
    AlertSummary,
    BodySource,
    Entry,
    InboundMail,
    Options,
    Piece,
    RouteMode,
    SmsRequest,
)  # fmt: skip
from relay.parsers import command as command_parser
from relay.parsers.cleanup import squeeze
from relay.summaries import fit

MAX_HOPS = 50  # Received: headers before we call it a loop (Postfix's hopcount_limit)
_LEADING_PREFIX = re.compile(r"^\s*_+(?=[A-Za-z]+__)")
_COMMENT_LINE = re.compile(r"^~~~$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Target:
    """One recipient resolved: its route, phones and the text they get."""

    rcpt: str
    route: Route
    phones: tuple[str, ...]
    text: str  # what the phones get
    source: str = ""  # the text before summary and cut: what alert_key / recovery patterns read
    summary: AlertSummary | None = None  # the route used the recogniser's summary
    cut: bool = False  # the text was cut to fit the route's parts or the provider's 1000 characters
    warnings: tuple[str, ...] = ()  # for the log (WARNING) and `render`
    shortened: tuple[str, ...] = ()  # what the summary's fit shortened or dropped, in order


def find_route(
    routes: Sequence[Route],
    rcpt: str,
    mail_from: str,
    subject: str | None = None,
    header_from: str = "",
) -> Route | None:
    """The first route matching; `subject=None` means "not known yet" (the RCPT stage)."""
    for route in routes:
        if not route.recipient.search(rcpt):
            continue
        if route.sender_match and not (
            route.sender_match.search(mail_from) or (header_from and route.sender_match.search(header_from))
        ):
            continue
        if route.subject_match and subject is not None and not route.subject_match.search(subject):
            continue
        return route
    return None


def check_recipient(
    routes: Sequence[Route], aliases: Mapping[str, tuple[str, ...]], rcpt: str, mail_from: str
) -> Route:
    """What the listener asks at RCPT: raises NoRouteError or AddressError, else the route."""
    route = find_route(routes, rcpt, mail_from)
    if route is None:
        raise NoRouteError(rcpt)
    phones_for(route, aliases, rcpt)
    return route


def route_mail(
    mail: InboundMail,
    routes: Sequence[Route],
    aliases: Mapping[str, tuple[str, ...]],
    new_id: Callable[[], str],
) -> list[SmsRequest]:
    targets, passthrough = resolve(mail, routes, aliases, new_id)
    return merge(targets, new_id) + passthrough


def resolve(
    mail: InboundMail,
    routes: Sequence[Route],
    aliases: Mapping[str, tuple[str, ...]],
    new_id: Callable[[], str],
    custom: Sequence[summaries.Recogniser] = (),
) -> tuple[list[Target], list[SmsRequest]]:
    """Each recipient's route, phones and text; passthrough mails as they will be relayed.
    `custom`: the config's own recognisers (`summaries:`), tried before the built-in ones."""
    if mail.received_count > MAX_HOPS:
        raise LoopError(f"{mail.received_count} Received: headers; routing loop detected")
    targets: list[Target] = []
    passthrough: list[SmsRequest] = []
    recognised = summaries.summarise(mail, custom)
    for rcpt in dict.fromkeys(mail.rcpt_tos):
        route = find_route(routes, rcpt, mail.mail_from, mail.subject, mail.header_from)
        if route is None:
            raise NoRouteError(rcpt)
        if route.mode is RouteMode.PASSTHROUGH:
            if not any(r.route == route.name for r in passthrough):
                passthrough.append(_passthrough(mail, route, rcpt, new_id))
            continue
        phones = phones_for(route, aliases, rcpt)
        targets.append(_target(route, mail, rcpt, phones, recognised if route.summary else None))
    return targets, passthrough


def phones_for(route: Route, aliases: Mapping[str, tuple[str, ...]], rcpt: str) -> tuple[str, ...]:
    """The phones a recipient of this route gets: the route's, its alias's, or the address's number."""
    if route.mode is not RouteMode.COMMAND or route.phones:
        return route.phones
    m = route.recipient.search(rcpt)
    groups = m.groupdict() if m else {}
    if groups.get("phones"):
        try:
            # From a client's address: one plain number, never a group or a list.
            return (fields.phone(groups["phones"]),)
        except ValueError as exc:
            raise AddressError(f"<{rcpt}>: {exc}") from None
    alias = (groups.get("alias") or "").lower()
    if alias in aliases:
        return aliases[alias]
    raise NoRouteError(rcpt)


def _target(
    route: Route, mail: InboundMail, rcpt: str, phones: tuple[str, ...], summary: AlertSummary | None
) -> Target:
    if route.message_type in ("ping", "hlr"):
        return Target(rcpt, route, phones, "")  # no text: the prefix is the whole message
    # An explicit [text] block is exactly what the sender wants sent, without the subject.
    subject = "" if mail.body_source is BodySource.TEXT_BLOCK else mail.subject
    full = _default_text(subject, mail.text)
    warnings: tuple[str, ...] = ()
    foreign = _foreign_command(mail)
    if foreign is not None:
        # An old app that talked to the provider directly: its login and password must never
        # become SMS text (a phone would show them, the provider's history keep them).
        full = "\n".join(e.text for e in foreign.entries)
        summary = None
        warnings = (
            f"route {route.name}: the mail is a provider command line with its own login and password:"
            " only its message text is sent (mode: passthrough relays such mail as it is meant)",
        )
    if mail.body_source is BodySource.TEXT_BLOCK:
        summary = None
    if route.template is None:
        text = summary.text if summary else full
    else:
        values = {
            "subject": mail.subject,
            "text": mail.text,
            "from": mail.header_from or mail.mail_from,
            "to": rcpt,
            "summary": summary.text if summary else full,
        }
        text = squeeze(route.template.format_map(values))
        summary = summary if "{summary}" in route.template else None
    if not text:
        raise ContentError("nothing usable to send: the mail has no text and no subject")
    text = _neutralize(segments.fold_to_gsm(text))
    overhead = len(route.prefix) + (len(command.COMMENT_SEPARATOR + route.comment) if route.comment else 0)
    limit = command.MAX_MES - overhead
    shortened: tuple[str, ...] = ()
    if summary is not None and route.template is None and summary.alert:
        fitted, shortened = _fit_summary(summary, route, limit)
    else:
        fitted = segments.fit(text, max_chars=limit, max_parts=route.max_parts, marker=route.marker,
                              translit=route.translit)  # fmt: skip
    return Target(
        rcpt, route, phones, fitted, source=full, summary=summary, cut=fitted != text, warnings=warnings,
        shortened=shortened,
    )  # fmt: skip


def _foreign_command(mail: InboundMail) -> command_parser.Command | None:
    """The provider command line a mail's body is, if it is one (`login:psw:id:...:phones:mes`)."""
    body = mail.body or mail.text
    if body.split("\n", 1)[0].count(":") < 6:
        return None  # the common case, without trying to parse
    try:
        found = command_parser.parse(body)
    except ContentError:
        return None
    return found if found.password else None


def _fit_summary(summary: AlertSummary, route: Route, limit: int) -> tuple[str, tuple[str, ...]]:
    """One SMS part by priority (relay/summaries/fit.py): the detail and other low-priority
    pieces shrink first; state, host and key value are the last to go."""
    pieces = [Piece(p.role, _neutralize(p.text), p.sep) for p in summary.pieces]

    def fits(text: str) -> bool:
        return len(text) <= limit and segments.count(text, translit=route.translit).parts <= 1

    text, shortened = fit.fit(pieces, fits, route.marker)
    if fits(text):
        return text, shortened
    cut = segments.fit(text, max_chars=limit, max_parts=1, marker=route.marker, translit=route.translit)
    return cut, (*shortened, "the whole text, cut")


def _default_text(subject: str, text: str) -> str:
    # Alerts often repeat the subject in the body (first line, or a line of its own): send it once.
    if not text or not subject:
        return text or subject
    if text.startswith(subject) or subject in text.split("\n"):
        return text
    return f"{subject}\n{text}"


def _neutralize(text: str) -> str:
    """Client text must not act as provider syntax: a leading __CALL__ would place a voice
    call, and a line of ~~~ would turn the rest of the alert into an unsent comment."""
    text = _LEADING_PREFIX.sub("", text)
    # The provider reads `\n` as a line break in the list form: a literal backslash-n (Windows
    # paths, JSON logs) gets a space now, before the text is cut, so its length is final.
    text = text.replace("\\n", "\\ n")
    return _COMMENT_LINE.sub("~ ~ ~", text)


def merge(targets: list[Target], new_id: Callable[[], str]) -> list[SmsRequest]:
    """Targets with the same options become one request (the `::list` form for several texts)."""
    groups: dict[tuple[RouteMode, Options, str, str, int, str], list[Target]] = {}
    for t in targets:
        # An email2sms mail holds one text (the account decides the phones): one mail per text.
        own = t.text if t.route.mode is RouteMode.EMAIL2SMS else ""
        key = (
            t.route.mode,
            t.route.options,
            t.route.prefix,
            t.route.comment,
            t.route.translit,
            own,
        )
        groups.setdefault(key, []).append(t)
    requests = []
    for (mode, options, prefix, comment, _, _), members in groups.items():
        by_text: dict[str, list[str]] = {}
        for t in members:
            by_text.setdefault(t.text, []).extend(t.phones)
        requests.append(
            SmsRequest(
                relay_id=new_id(),
                mode=mode,
                route="+".join(dict.fromkeys(t.route.name for t in members)),
                rcpt_tos=tuple(t.rcpt for t in members),
                entries=tuple(Entry(tuple(dict.fromkeys(p)), text) for text, p in by_text.items()),
                options=options,
                prefix=prefix,
                comment=comment,
                translit=members[0].route.translit,
            )
        )
    return requests


def _passthrough(mail: InboundMail, route: Route, rcpt: str, new_id: Callable[[], str]) -> SmsRequest:
    parsed = command_parser.parse(mail.body or mail.text)
    # The provider's replies come to the relay, not to the legacy app: the relay's own `test`
    # setting decides whether it asks for them.
    options = dataclasses.replace(parsed.options, test="")
    return SmsRequest(
        relay_id=new_id(),
        mode=RouteMode.PASSTHROUGH,
        route=route.name,
        rcpt_tos=(rcpt,),
        entries=parsed.entries,
        options=options,
        translit=int(parsed.options.translit or 0),
        original_id=parsed.request_id,
    )
