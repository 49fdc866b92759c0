"""The `routes:` section: what each recipient pattern turns into, read and checked."""

from __future__ import annotations

import dataclasses
import re
import string
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from relay import fields
from relay.config.reader import Reader
from relay.config.schema import (
    MAX_PARTS_LIMIT,
    PREFIXES,
    TEMPLATE_FIELDS,
    ProviderConfig,
    Route,
    StormSettings,
    default,
)
from relay.errors import Problem
from relay.model import Options, RouteMode
from relay.storm.pacing import FLOOD_LIMIT, REPEAT_WINDOW

SUMMARY = ("auto", "off")  # route.summary: use a monitoring sender's summary, or the whole text


def read_routes(
    top: Reader, aliases: dict[str, tuple[str, ...]], provider: ProviderConfig
) -> tuple[Route, ...]:
    items = top.items("routes")
    if not items:
        top.problem("routes", "at least one route is required: without one every recipient is refused")
    routes: list[Route] = []
    for index, (item, path, line) in enumerate(items):
        r = Reader(top.problems, item, path, line)
        route = _route(r, index, aliases, provider)
        r.finish()
        if route and any(route.name == other.name for other in routes):
            # held alerts, queue entries and metrics name their route: names must tell them apart
            r.problem("name", f"another route is named {route.name!r} already")
        elif route:
            routes.append(route)
    return tuple(routes)


def _route(
    r: Reader, index: int, aliases: dict[str, tuple[str, ...]], provider: ProviderConfig
) -> Route | None:
    name = r.value("name", str, f"route{index + 1}")
    mode_name = r.choice("mode", default(Route, "mode").value, tuple(m.value for m in RouteMode))
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
        message_type=r.choice("type", default(Route, "message_type"), tuple(PREFIXES)),
        comment=comment,
        template=template,
        max_parts=r.integer("max_parts", default(Route, "max_parts"), 0, MAX_PARTS_LIMIT),
        marker=r.value("truncation_marker", str, default(Route, "marker")),
        summary=_summary(r),
    )
    if r.has("credentials") and r.choice("credentials", "config", ("config", "keep")) == "keep":
        # The client's own password would wait in the spool, in the clear, until the message is
        # final: against "the password is never stored". The mail's login is replaced instead.
        r.problem("credentials", "keep is refused: the client's own provider password would be stored in the "
                  "spool; passthrough mail goes out with provider.login and its password (remove the key), "
                  "and another account needs a relay with that account's config")  # fmt: skip
    route = _storm(r, route)
    _cross_check(r, route, provider)
    return route if recipient else None


def _storm(parent: Reader, route: Route) -> Route:
    """The route's `storm:` section: `true` for the defaults, a mapping to change some."""
    raw = parent.raw("storm")
    if raw is None or raw is False:
        return route
    if route.mode is not RouteMode.COMMAND:
        parent.problem("storm", f"storm control needs mode: command (this route is {route.mode.value})")
        return route
    r = (
        parent.child("storm")
        if raw is not True
        else Reader(parent.problems, None, parent.key_path("storm"), None)
    )
    d = StormSettings()
    window = r.integer("dedup_window", int(d.dedup_window), int(REPEAT_WINDOW), 86400)
    quiet = _quiet_hours(r)
    by = r.choice("quiet_by", "relay", ("relay", "provider"))
    tz = r.value("quiet_tz", str, "")
    if tz:
        try:
            ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            r.problem("quiet_tz", f"unknown time zone {tz!r} (a name such as Europe/Moscow)")
            tz = ""
    settings = StormSettings(
        dedup_window=float(window),
        hold=float(r.integer("hold", int(d.hold), 0, 3600)),
        first_hold=float(r.integer("first_hold", int(d.first_hold), 0, 3600)),
        urgent=r.value("urgent", bool, False),
        min_gap=float(r.integer("min_gap", int(d.min_gap), 0, 3600)),
        burst=r.integer("burst", d.burst, 1, FLOOD_LIMIT - 1),
        max_parts=r.integer("max_parts", route.max_parts or d.max_parts, 1, MAX_PARTS_LIMIT),
        recovery=_regex(r, "recovery"),
        alert_key=_regex(r, "alert_key"),
        quiet_hours=quiet if by == "relay" else None,
        quiet_tz=tz,
        translit=route.translit,
    )
    if settings.alert_key and settings.alert_key.groups and "key" not in settings.alert_key.groupindex:
        r.problem("alert_key", "name the part that identifies the alert (?P<key>...), or use no group")
    if settings.recovery and not settings.alert_key:
        r.problem("recovery", "needs alert_key too: it says which held problem a recovery cancels")
    options = route.options
    if quiet and by == "provider":
        if tz:
            r.problem(
                "quiet_tz", "quiet_by: provider uses the provider's time field (Moscow time + route tz)"
            )
        if options.time:
            r.problem("quiet_hours", "route time is set already; quiet_by: provider would replace it")
        elif not quiet[1] < quiet[0]:
            r.problem(
                "quiet_hours", "the provider's time field is one window h1-h2: quiet hours must span midnight"
            )
        else:
            options = dataclasses.replace(options, time=f"{quiet[1]}-{quiet[0]}")
    r.finish()
    return dataclasses.replace(route, storm=settings, options=options)


def _summary(r: Reader) -> bool:
    """`summary: auto | off` (YAML reads a bare off/on as a boolean: the same thing)."""
    raw = r.raw("summary")
    if raw is None:
        return bool(default(Route, "summary"))
    if isinstance(raw, bool):
        return raw
    if raw not in SUMMARY:
        r.problem("summary", f"{raw!r} is not one of {', '.join(SUMMARY)}")
        return bool(default(Route, "summary"))
    return bool(raw == "auto")


def _quiet_hours(r: Reader) -> tuple[int, int] | None:
    value = r.value("quiet_hours", str, "")
    if not value:
        return None
    m = re.fullmatch(r"(\d{1,2})-(\d{1,2})", value.strip())
    if not m or not (0 <= int(m[1]) <= 23 and 0 <= int(m[2]) <= 23) or m[1] == m[2]:
        r.problem("quiet_hours", f"{value!r} must be two different hours H1-H2 (0-23), e.g. 23-7")
        return None
    return int(m[1]), int(m[2])


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
