"""Recognisers for the default mail of common monitoring tools: a table, one function a format
(the host tools' are in hosts.py).

Each takes the parsed mail and returns the pieces of its summary (state, host, problem, value,
detail), or None when the mail is not its tool's. They know where each tool puts what; the
reading of fields and boilerplate is shared with the general summariser (reading.py).

Formats: Nagios 4 (and Naemon, Icinga 1, Shinken, Centreon, which kept its commands) and Icinga
2 default notification commands, Zabbix's default message templates, Prometheus Alertmanager's
default e-mail (HTML and text) and custom text templates, Grafana alerting (9-11 and legacy).
"""

from __future__ import annotations

import re

from relay.model import AlertSummary, InboundMail, Piece, Role
from relay.summaries.general import instances
from relay.summaries.hosts import (
    apcupsd,
    cron,
    fail2ban,
    logwatch,
    mdadm,
    nut,
    ossec,
    smartd,
    synology,
    systemd,
)
from relay.summaries.make import Recogniser, summary_of
from relay.summaries.reading import fields_of, read

# ---- Nagios 4 / Icinga 2 -----------------------------------------------------------------------
# Nagios 4 and the tools that kept its notify-by-email commands (Naemon, Icinga 1, Shinken,
# Centreon): `** PROBLEM Service Alert: host/service is STATE **`, `** PROBLEM alert - host/... **`
_NAGIOS_SUBJECT = re.compile(
    r"^\*\* (?P<type>[A-Z]+) (?:(?:Host|Service) Alert: |alert - )(?P<host>[^/\s]+)(?:/(?P<service>.+?))? is "
    r"(?P<state>\S+) \*\*$",
    re.IGNORECASE,
)
_NAGIOS_BANNER = re.compile(r"^\*{5} \w+(?: \w+)? \*{5}$", re.MULTILINE)
_ADDITIONAL = re.compile(r"Additional Info\s*:\s*(?P<info>.+)", re.IGNORECASE)
_ICINGA_SUBJECT = re.compile(
    r"^\[(?P<type>[A-Z]+)\] (?:Host |(?P<service>.+) on )?(?P<host>\S+) is (?P<state>\w+)!?$"
)


def nagios(mail: InboundMail) -> AlertSummary | None:
    m = _NAGIOS_SUBJECT.match(mail.subject)
    if not m and not _NAGIOS_BANNER.search(mail.text):
        return None
    f = fields_of(mail.text)
    kind = (f.get("notification type") or (m["type"] if m else "")).upper()
    host = f.get("host") or (m["host"] if m else "")
    service = f.get("service") or (m["service"] if m and m["service"] else "")
    state = f.get("state") or (m["state"] if m else "")
    if not (kind and host):
        return None
    additional = _ADDITIONAL.search(mail.text)
    detail = f.get("info") or f.get("additional info") or (additional["info"] if additional else "")
    return summary_of(
        "nagios", _host_service(kind, host, service, state, detail), host, (host, service), kind == "RECOVERY",
        ("banner", "subject", "Notification Type", "Address", "Date/Time"),
    )  # fmt: skip


def icinga(mail: InboundMail) -> AlertSummary | None:
    m = _ICINGA_SUBJECT.match(mail.subject)
    if not m or not re.search(r"^\*{5} (?:Service|Host) Monitoring on ", mail.text, re.MULTILINE):
        return None
    f = fields_of(mail.text)
    host = f.get("host") or m["host"]
    service = f.get("service") or (m["service"] or "")
    kind = m["type"]
    return summary_of(
        "icinga2", _host_service(kind, host, service, m["state"], f.get("info", "")), host, (host, service),
        kind == "RECOVERY", ("banner", "subject", "When", "addresses", "comments"),
    )  # fmt: skip


def _host_service(kind: str, host: str, service: str, state: str, detail: str) -> list[Piece]:
    return [
        Piece(Role.STATE, kind),
        Piece(Role.HOST, host),
        Piece(Role.PROBLEM, service, "/"),
        Piece(Role.STATE, state),
        Piece(Role.DETAIL, detail, ": "),
    ]


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
    low = mail.text.lower()
    if "problem" not in low and "проблема" not in low:
        return None
    start = _ZABBIX_START.search(mail.text)
    if not start:
        return None
    f = fields_of(mail.text)

    def get(name: str) -> str:
        return next((f[k] for k in _ZABBIX[name] if f.get(k)), "")

    subject = _ZABBIX_SUBJECT.match(mail.subject)
    problem = get("problem") or (subject["name"] if subject else mail.subject)
    host = get("host")
    value, detail = get("data"), get("severity")
    if start["resolved"]:
        kind, value, detail = "RESOLVED", "", f"after {get('duration')}" if get("duration") else ""
    elif start["updated"]:
        kind, value, detail = "UPDATE", "", start["updated"]
    else:
        kind = "PROBLEM"
    pieces = [Piece(Role.STATE, kind), Piece(Role.HOST, host), Piece(Role.PROBLEM, problem, ": " if host else " "),
              Piece(Role.VALUE, value, ": "), Piece(Role.DETAIL, detail, ", " if value else ": ")]  # fmt: skip
    return summary_of(
        "zabbix",
        pieces,
        host,
        (host, problem),
        kind == "RESOLVED",
        ("subject", "start time", "Original problem ID"),
    )


# ---- Prometheus Alertmanager and Grafana -------------------------------------------------------
_AM_SUBJECT = re.compile(
    r"^\[(?P<state>FIRING|RESOLVED)(?::(?P<count>\d+))?\] (?P<name>\S+)(?: \((?P<labels>.*)\))?$"
)


def alertmanager(mail: InboundMail) -> AlertSummary | None:
    m = _AM_SUBJECT.match(mail.subject)
    if not m or _is_grafana(mail):
        return None
    return _grouped("alertmanager", mail, m, ("links", "labels", "View in Alertmanager"))


def grafana(mail: InboundMail) -> AlertSummary | None:
    m = _AM_SUBJECT.match(mail.subject)
    if not m or not _is_grafana(mail):
        return None
    return _grouped("grafana", mail, m, ("links", "labels", "silence and dashboard links"))


def _is_grafana(mail: InboundMail) -> bool:
    return "grafana" in mail.header_from.lower() or bool(
        re.search(
            r"^\*\*(Firing|Resolved)\*\*|^You have \d+ (?:firing|resolved) alert", mail.text, re.M | re.I
        )
    )


def _grouped(name: str, mail: InboundMail, m: re.Match[str], dropped: tuple[str, ...]) -> AlertSummary:
    """Alertmanager and Grafana: `FIRING:2 NodeFilesystemAlmostFull db01 96.1%, db02 93.0%`."""
    reading = read(mail.text, mail.subject)
    count = int(m["count"] or 1)
    found = instances(reading.fields)
    summaries = [
        f.value for key in ("summary", "message", "description") for f in reading.fields if f.key == key
    ]
    if not summaries:  # the text template: "RESOLVED: <summary>" / "FIRING: <summary>"
        summaries = re.findall(r"^(?:FIRING|RESOLVED): (.+)$", mail.text, re.MULTILINE) or list(
            reading.free[:1]
        )
    values = [f.value for f in reading.fields if f.role is Role.VALUE]
    if len(found) > 1:
        where, value = "", ", ".join(f"{h} {v}".strip() for h, v in found)
    else:
        where = found[0][0] if found else (m["labels"] or "")
        value = values[0] if values else ""  # one alert: its summary says the measurement itself
    pieces = [
        Piece(Role.STATE, m["state"] + (f":{count}" if count > 1 else "")),
        Piece(Role.PROBLEM, m["name"]),
        Piece(Role.HOST, where),
        Piece(Role.VALUE, value, ": " if len(found) <= 1 else " "),
        Piece(Role.DETAIL, summaries[0] if summaries else "", ": "),
    ]
    return summary_of(name, pieces, where, (m["name"], m["labels"] or ""), m["state"] == "RESOLVED", dropped)


RECOGNISERS: tuple[Recogniser, ...] = (
    nagios, icinga, zabbix, grafana, alertmanager, cron, smartd, apcupsd, nut, synology, mdadm, logwatch, fail2ban, ossec,
    systemd,
)  # fmt: skip
