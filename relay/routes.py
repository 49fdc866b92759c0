"""Route definitions: what each recipient pattern turns into; read and checked from the config."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from relay import fields
from relay.configread import Reader
from relay.errors import Problem
from relay.model import Options, RouteMode

if TYPE_CHECKING:
    from relay.config import ProviderConfig

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
TEMPLATE_FIELDS = frozenset({"subject", "text", "from", "to"})
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
    keep_credentials: bool = False  # passthrough: keep the login/password the mail carries

    @property
    def prefix(self) -> str:
        return PREFIXES[self.message_type]

    @property
    def translit(self) -> int:
        return int(self.options.translit or 0)


def read_routes(
    top: Reader, aliases: dict[str, tuple[str, ...]], provider: ProviderConfig
) -> tuple[Route, ...]:
    items = top.items("routes")
    if not items:
        top.problem("routes", "at least one route is required: without one every recipient is refused")
    routes = []
    for index, (item, path, line) in enumerate(items):
        r = Reader(top.problems, item, path, line)
        route = _route(r, index, aliases, provider)
        r.finish()
        if route:
            routes.append(route)
    return tuple(routes)


def _route(
    r: Reader, index: int, aliases: dict[str, tuple[str, ...]], provider: ProviderConfig
) -> Route | None:
    name = r.value("name", str, f"route{index + 1}")
    mode_name = r.choice("mode", "command", tuple(m.value for m in RouteMode))
    mode = RouteMode(mode_name)
    match = r.child("match")
    recipient = _regex(match, "recipient", required=True)
    sender_match = _regex(match, "sender")
    subject_match = _regex(match, "subject")
    match.finish()
    phones = _phones(r, aliases)
    options = Options(
        time=r.checked("time", fields.time, ""),
        tz=r.checked("tz", lambda v: fields.tz(str(v)), "", kind=object),
        translit=str(r.integer("translit", 0, 0, 2)) if r.has("translit") else "",
        format=str(r.integer("format", 0, 0, 12)) if r.has("format") else "",
        sender=r.checked("sender", fields.sender, ""),
        test="",
    )
    template = _template(r)
    comment = r.value("comment", str, "")
    if "\n~~~\n" in comment:
        r.problem("comment", "must not contain the comment separator itself")
    route = Route(
        name=name,
        recipient=recipient or re.compile("(?!)"),
        mode=mode,
        sender_match=sender_match,
        subject_match=subject_match,
        phones=phones,
        options=options,
        message_type=r.choice("type", "sms", tuple(PREFIXES)),
        comment=comment,
        template=template,
        max_parts=r.integer("max_parts", 0, 0, MAX_PARTS_LIMIT),
        marker=r.value("truncation_marker", str, "..."),
        keep_credentials=r.choice("credentials", "config", ("config", "keep")) == "keep",
    )
    _cross_check(r, route, provider)
    return route if recipient else None


def _regex(r: Reader, key: str, *, required: bool = False) -> re.Pattern[str] | None:
    value = r.value(key, str, "", required=required)
    if not value:
        return None
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        r.problem(key, f"bad regular expression: {exc}")
        return None


def _phones(r: Reader, aliases: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    result: list[str] = []
    for item, path, line in r.items("phones"):
        text = str(item)
        if text in aliases:
            result.extend(aliases[text])
            continue
        try:
            result.append(fields.phone(text, groups=True))
        except ValueError as exc:
            r.problems.append(Problem(path, line, f"{exc} (nor an alias name)"))
    return tuple(dict.fromkeys(result))


def _template(r: Reader) -> str | None:
    value = r.value("template", str, "") if r.has("template") else None
    if value is None:
        return None
    try:
        names = [f for _, f, spec, conv in string.Formatter().parse(value) if f is not None]
    except ValueError as exc:
        r.problem("template", f"bad template: {exc} (write {{{{ and }}}} for literal braces)")
        return None
    for field_name in names:
        # Only plain names: "{subject.__class__}" or "{text[0]}" would reach into Python objects.
        if field_name not in TEMPLATE_FIELDS:
            allowed = ", ".join("{" + f + "}" for f in sorted(TEMPLATE_FIELDS))
            r.problem("template", f"unknown field {{{field_name}}}; use {allowed}")
            return None
    return value


def _cross_check(r: Reader, route: Route, provider: ProviderConfig) -> None:
    groups = set(route.recipient.groupindex)
    if route.mode is RouteMode.COMMAND and not route.phones and not groups & {"phones", "alias"}:
        r.problem(
            "phones",
            "a command route needs phones: list them, or capture them with (?P<phones>...) "
            "or (?P<alias>...) in match.recipient",
        )
    if route.mode is RouteMode.EMAIL2SMS and not provider.login:
        r.problem("mode", "email2sms needs provider.login (mail goes to <login>@send.smscentre.com)")
    if route.mode is not RouteMode.COMMAND and route.phones:
        r.problem("phones", f"phones have no effect in {route.mode.value} mode")
