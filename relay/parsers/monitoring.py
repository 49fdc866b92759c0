"""Recognise the mail of common monitoring senders and say what an on-call engineer needs first.

Each recogniser takes the parsed mail (subject and cleaned text) and returns an AlertSummary,
or None when the mail is not its sender's. The summary is a head (state, host, service or
problem: kept whole when a text is cut) and a detail (the key measurement or message: cut
first), an identity that two mails about the same alert share whatever their times, values and
event ids, and the names of what the summary leaves out (banners, repeated subjects, links,
label dumps, dates the phone shows anyway). Unknown mail gets None and keeps the plain path.

Formats: Nagios 4 and Icinga 2 default notification commands, Zabbix's default message
templates (English and Russian), Prometheus Alertmanager's default e-mail (HTML and text),
Grafana alerting, cron, smartd, apcupsd's apccontrol, NUT's upsmon, Synology DSM.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from relay.model import AlertSummary, InboundMail

_FIELD = re.compile(r"^\s*(?:-\s*)?(?P<name>[^:=\n]{1,40}?)\s*[:=]\s*(?P<value>.*?)\s*$", re.MULTILINE)
_URL = re.compile(r"https?://\S+")


def fields(text: str) -> dict[str, str]:
    """`Name: value` and `name = value` lines, first occurrence wins; names lower-cased."""
    found: dict[str, str] = {}
    for m in _FIELD.finditer(text):
        found.setdefault(m["name"].strip().lower(), m["value"])
    return found


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _identity(*parts: str) -> str:
    return " ".join(_one_line(p).lower() for p in parts if p)


# ---- Nagios 4 / Icinga 2 -----------------------------------------------------------------------
_NAGIOS_SUBJECT = re.compile(
    r"^\*\* (?P<type>[A-Z]+) (?:Host|Service) Alert: (?P<host>[^/\s]+)(?:/(?P<service>.+?))? is (?P<state>\S+) \*\*$"
)
_ICINGA_SUBJECT = re.compile(
    r"^\[(?P<type>[A-Z]+)\] (?:(?P<service>.+) on )?(?P<host>\S+) is (?P<state>[A-Z]+)!?$"
)


def nagios(mail: InboundMail) -> AlertSummary | None:
    m = _NAGIOS_SUBJECT.match(mail.subject)
    if not m and "***** Nagios *****" not in mail.text:
        return None
    f = fields(mail.text)
    kind = (f.get("notification type") or (m["type"] if m else "")).upper()
    host = f.get("host") or (m["host"] if m else "")
    service = f.get("service") or (m["service"] if m and m["service"] else "")
    state = f.get("state") or (m["state"] if m else "")
    if not (kind and host):
        return None
    detail = f.get("info") or f.get("additional info") or _after(mail.text, "Additional Info:")
    where = f"{host}/{service}" if service else host
    return AlertSummary(
        recogniser="nagios", head=_join(kind, where, state), detail=_one_line(detail), host=host,
        identity=_identity("nagios", host, service), recovery=kind == "RECOVERY",
        dropped=("banner", "subject", "Notification Type", "Address", "Date/Time"),
    )  # fmt: skip


def icinga(mail: InboundMail) -> AlertSummary | None:
    m = _ICINGA_SUBJECT.match(mail.subject)
    if not m or not re.search(r"^\*{5} (?:Service|Host) Monitoring on ", mail.text, re.MULTILINE):
        return None
    f = fields(mail.text)
    host = f.get("host") or m["host"]
    service = f.get("service") or (m["service"] or "")
    where = f"{host}/{service}" if service else host
    kind = m["type"]
    return AlertSummary(
        recogniser="icinga2", head=_join(kind, where, m["state"]), detail=_one_line(f.get("info", "")),
        host=host, identity=_identity("icinga2", host, service), recovery=kind == "RECOVERY",
        dropped=("banner", "subject", "When", "addresses", "comments"),
    )  # fmt: skip


# ---- Zabbix ----------------------------------------------------------------------------------
_ZABBIX = {  # the default templates' field names, English and Russian
    "problem": ("problem name", "проблема"),
    "host": ("host", "узел сети"),
    "severity": ("severity", "важность"),
    "data": ("operational data", "оперативные данные"),
    "duration": ("problem duration", "длительность проблемы"),
}
_ZABBIX_START = re.compile(
    r"^(?:Problem started at |Проблема началась в )|^(?P<resolved>Problem has been resolved (?:at|in) |"
    r"Проблема решена в? ?)|^(?P<updated>.+ problem at .+\.$)",
    re.MULTILINE,
)
_ZABBIX_SUBJECT = re.compile(
    r"^(?:Problem|Проблема|Resolved[^:]*|Решена[^:]*|Updated problem[^:]*):\s*(?P<name>.+)$"
)


def zabbix(mail: InboundMail) -> AlertSummary | None:
    start = _ZABBIX_START.search(mail.text)
    if not start:
        return None
    f = fields(mail.text)

    def get(name: str) -> str:
        return next((f[k] for k in _ZABBIX[name] if f.get(k)), "")

    subject = _ZABBIX_SUBJECT.match(mail.subject)
    problem = get("problem") or (subject["name"] if subject else mail.subject)
    host = get("host")
    if start["resolved"]:
        kind, detail = "RESOLVED", _join("after", get("duration")) if get("duration") else ""
    elif start["updated"]:
        kind, detail = "UPDATE", start["updated"]
    else:
        kind, detail = "PROBLEM", ", ".join(x for x in (get("severity"), get("data")) if x)
    where = f"{host}: {problem}" if host else problem
    return AlertSummary(
        recogniser="zabbix", head=f"{kind} {where}", detail=_one_line(detail), host=host,
        identity=_identity("zabbix", host, problem), recovery=kind == "RESOLVED",
        dropped=("subject", "start time", "Original problem ID"),
    )  # fmt: skip


# ---- Prometheus Alertmanager and Grafana -------------------------------------------------------
_AM_SUBJECT = re.compile(
    r"^\[(?P<state>FIRING|RESOLVED)(?::(?P<count>\d+))?\] (?P<name>\S+)(?: \((?P<labels>.*)\))?$"
)


def alertmanager(mail: InboundMail) -> AlertSummary | None:
    m = _AM_SUBJECT.match(mail.subject)
    grafana = (
        "grafana" in mail.header_from.lower() or "**Firing**" in mail.text or "**Resolved**" in mail.text
    )
    if not m or grafana:
        return None
    count = int(m["count"] or 1)
    summaries = _values(mail.text, ("summary", "description"))
    if not summaries:  # the text template: "RESOLVED: <summary>" / "FIRING: <summary>"
        summaries = [s for s in re.findall(r"^(?:FIRING|RESOLVED): (.+)$", mail.text, re.MULTILINE)]
    instances = _values(mail.text, ("instance",)) or re.findall(r"\binstance=(\S+)", mail.text)
    state = m["state"] + (f":{count}" if count > 1 else "")
    target = instances[0] if len(set(instances)) == 1 else ""
    detail = "; ".join(dict.fromkeys(summaries))
    return AlertSummary(
        recogniser="alertmanager", head=_join(state, m["name"], target), detail=detail, host=target,
        identity=_identity("alertmanager", m["name"], m["labels"] or ""), recovery=m["state"] == "RESOLVED",
        dropped=("links", "labels", "View in Alertmanager"),
    )  # fmt: skip


def grafana(mail: InboundMail) -> AlertSummary | None:
    m = _AM_SUBJECT.match(mail.subject)
    if not m or not (
        "grafana" in mail.header_from.lower() or re.search(r"^\*\*(Firing|Resolved)\*\*", mail.text, re.M)
    ):
        return None
    count = int(m["count"] or 1)
    summaries = _values(mail.text, ("summary", "description"))
    value = fields(mail.text).get("value", "")
    detail = "; ".join(dict.fromkeys(summaries)) + (f" ({value})" if value and summaries else value)
    labels = m["labels"] or ""
    return AlertSummary(
        recogniser="grafana", head=_join(m["state"] + (f":{count}" if count > 1 else ""), m["name"], labels),
        detail=detail, host=labels, identity=_identity("grafana", m["name"], labels),
        recovery=m["state"] == "RESOLVED", dropped=("links", "labels"),
    )  # fmt: skip


# ---- hosts: cron, smartd, UPS, NAS -------------------------------------------------------------
_CRON = re.compile(r"^Cron <(?P<user>[^@>]+)@(?P<host>[^>]+)> (?P<cmd>.+)$")
_SMART = re.compile(r"^SMART error \((?P<what>[^)]+)\) detected on host: (?P<host>\S+)")
_APC = re.compile(r"^(?P<host>\S+) UPS (?P<ups>\S+) (?P<event>.+?)[\s!.]*$")
_NUT = re.compile(r"\bUPS (?P<ups>\S+@\S+|\S+) (?P<event>on battery|on line power|battery is low|is unavailable"
                  r"|battery needs to be replaced|forced shutdown in progress|communications (?:lost|restored))",
                  re.IGNORECASE)  # fmt: skip
_SYNOLOGY = re.compile(r"^\[(?P<host>[^\]]+)\] (?P<event>.+)$")


def cron(mail: InboundMail) -> AlertSummary | None:
    m = _CRON.match(mail.subject)
    if not m:
        return None
    output = " / ".join(line.strip() for line in mail.text.splitlines() if line.strip())
    return AlertSummary(
        recogniser="cron", head=f"CRON {m['host']}: {m['cmd']}", detail=output, host=m["host"],
        identity=_identity("cron", m["host"], m["cmd"]), recovery=False, dropped=("subject",),
    )  # fmt: skip


def smartd(mail: InboundMail) -> AlertSummary | None:
    m = _SMART.match(mail.subject)
    if not m:
        return None
    devices = re.findall(r"^Device: (.+)$", mail.text, re.MULTILINE)
    return AlertSummary(
        recogniser="smartd", head=f"SMART {m['host']}: {m['what']}", detail="; ".join(devices), host=m["host"],
        identity=_identity("smartd", m["host"], m["what"]), recovery=False,
        dropped=("banner", "device info", "DNS domain"),
    )  # fmt: skip


def apcupsd(mail: InboundMail) -> AlertSummary | None:
    m = _APC.match(mail.subject)
    if not m or ("apcupsd" not in (mail.header_from + mail.text).lower() and "STATUS" not in mail.text):
        return None
    f = fields(mail.text)
    first = next((line for line in mail.text.splitlines() if line.strip()), "")
    said = re.sub(r"^.*?\d{4}\s+", "", first)  # drop the date apccontrol writes first
    status = ", ".join(f"{k.upper()} {f[k]}" for k in ("status", "bcharge", "timeleft") if f.get(k))
    event = m["event"]
    return AlertSummary(
        recogniser="apcupsd", head=f"UPS {m['ups']} on {m['host']}: {event}", detail=_join(said, status),
        host=m["host"], identity=_identity("apcupsd", m["host"], m["ups"]),
        recovery=bool(re.search(r"returned|restored|online", event, re.IGNORECASE)),
        dropped=("date", "apcaccess dump"),
    )  # fmt: skip


def nut(mail: InboundMail) -> AlertSummary | None:
    m = _NUT.search(mail.subject) or _NUT.search(mail.text)
    if not m:
        return None
    ups, event = m["ups"], m["event"].lower()
    host = ups.partition("@")[2] or ups
    return AlertSummary(
        recogniser="nut", head=f"UPS {ups}: {event}", detail="", host=host, identity=_identity("nut", ups),
        recovery=event in ("on line power", "communications restored"), dropped=("subject",),
    )  # fmt: skip


def synology(mail: InboundMail) -> AlertSummary | None:
    m = _SYNOLOGY.match(mail.subject)
    if not m or f"From {m['host']}" not in mail.text:
        return None
    kept = [
        line.strip()
        for line in mail.text.splitlines()
        if line.strip() and not re.match(r"^(Dear user|From \S+|Dear .+,)$", line.strip())
    ]
    return AlertSummary(
        recogniser="synology", head=f"NAS {m['host']}", detail=" ".join(kept) or m["event"], host=m["host"],
        identity=_identity("synology", m["host"], m["event"]), recovery=False, dropped=("greeting", "signature"),
    )  # fmt: skip


RECOGNISERS: tuple[Callable[[InboundMail], AlertSummary | None], ...] = (
    nagios, icinga, zabbix, grafana, alertmanager, cron, smartd, apcupsd, nut, synology,
)  # fmt: skip


def recognise(mail: InboundMail) -> AlertSummary | None:
    """The first recogniser that claims the mail, its summary never longer than the mail."""
    full = f"{mail.subject}\n{mail.text}"
    for recogniser in RECOGNISERS:
        summary = recogniser(mail)
        if summary is None:
            continue
        detail = _URL.sub("", summary.detail).strip(" ;,")
        head = summary.head.strip()
        if len(head) >= len(full):  # nothing to gain: the mail is as short as its summary
            return None
        if len(head) + 2 + len(detail) > len(full):
            detail = ""  # the detail repeats what the mail says anyway
        return AlertSummary(
            summary.recogniser,
            head,
            detail,
            summary.host,
            summary.identity,
            summary.recovery,
            summary.dropped,
        )
    return None


# ---- helpers ------------------------------------------------------------------------------------
def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _after(text: str, marker: str) -> str:
    _, found, rest = text.partition(marker)
    return rest.strip().split("\n", 1)[0] if found else ""


def _values(text: str, names: tuple[str, ...]) -> list[str]:
    """Every `name = value` (or `- name = value`) line's value for these names, in order."""
    pattern = re.compile(rf"^\s*(?:-\s*)?(?:{'|'.join(names)})\s*=\s*(.+?)\s*$", re.MULTILINE)
    return pattern.findall(text)


def fingerprint(text: str) -> str:
    """An alert's identity when no recogniser knows it: the text with what changes between
    repeats masked (numbers, times, dates, addresses, long hex ids), words kept whole, so
    `web01` and `web02` stay apart while `load 5.2` and `load 7.9` become one."""
    masked = re.sub(r"\b[0-9a-f]{8,}(?:-[0-9a-f]{4,})*\b", "#", text.lower())  # ids, uuids, hashes
    masked = re.sub(r"(?<![\w.])[-+]?\d+(?:[.,:/-]\d+)*(?![\w])", "#", masked)  # values, times, dates, IPs
    return _one_line(masked)
