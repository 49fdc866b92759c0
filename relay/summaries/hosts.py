"""Recognisers for the mail of host tools: cron, smartd, apcupsd, NUT, Synology DSM, mdadm,
logwatch, fail2ban, OSSEC/Wazuh; one function a format, listed in builtin.RECOGNISERS."""

from __future__ import annotations

import re

from relay.model import AlertSummary, InboundMail, Piece, Role
from relay.summaries.make import summary_of
from relay.summaries.reading import fields_of
from relay.summaries.vocabulary import troubled

# ---- hosts: cron, smartd, UPS, NAS -------------------------------------------------------------
_CRON = re.compile(r"^Cron <(?P<user>[^@>]+)@(?P<host>[^>]+)> (?P<cmd>.+)$")
_SMART = re.compile(r"^SMART error \((?P<what>[^)]+)\) detected on host: (?P<host>\S+)")
_APC = re.compile(r"^(?P<host>\S+) UPS (?P<ups>\S+) (?P<event>.+?)[\s!.]*$")
_NUT = re.compile(r"\bUPS (?P<ups>\S+@\S+|\S+) (?P<event>on battery|on line power|battery is low|is unavailable"
                  r"|battery needs to be replaced|forced shutdown in progress|communications (?:lost|restored))",
                  re.IGNORECASE)  # fmt: skip
_SYNOLOGY = re.compile(r"^\[(?P<host>[^\]]+)\] (?P<event>.+)$")


_RUN_PARTS = re.compile(r"run-parts\b.*?(?P<dir>/etc/cron\.\w+)")
_SHELL_PREFIX = re.compile(r"^(?:/bin/(?:ba|da)?sh|sh|bash): (?:\d+: )?(?:line \d+: )?")


def cron_command(cmd: str) -> str:
    """What a cron job is, short: `run-parts /etc/cron.daily` behind Debian's anacron test
    becomes `/etc/cron.daily`; a command loses its directory and its options after the first
    (`/usr/local/bin/certbot renew --quiet --deploy-hook ...` -> `certbot renew`)."""
    parts = _RUN_PARTS.search(cmd)
    if parts:
        return parts["dir"]
    words = cmd.split()
    kept: list[str] = []
    for word in words:
        if word.startswith(("-", ">")) or word in ("|", "||", "&&", ">", ">>", "2>&1", ";"):
            break
        kept.append(word.rsplit("/", 1)[-1] if not kept else word)
    return " ".join(kept[:3]) or cmd


def cron(mail: InboundMail) -> AlertSummary | None:
    m = _CRON.match(mail.subject)
    if not m:
        return None
    cmd = m["cmd"]
    failed = cmd.endswith(" (failed)")  # Debian's cron marks a non-zero exit in the subject
    cmd = cmd.removesuffix(" (failed)")
    lines = [_SHELL_PREFIX.sub("", line.strip()) for line in mail.text.splitlines() if line.strip()]
    trouble = [line for line in lines if troubled(line)]
    output = " / ".join(dict.fromkeys(trouble + [line for line in lines if line not in trouble]))
    pieces = [Piece(Role.STATE, "CRON"), Piece(Role.HOST, m["host"], " "), Piece(Role.PROBLEM, cron_command(cmd), ": "),
              Piece(Role.STATE, "failed" if failed else "", " "), Piece(Role.DETAIL, output, ": ")]  # fmt: skip
    return summary_of("cron", pieces, m["host"], (m["host"], cmd), False, ("subject", "command options"))


# ---- mdadm, logwatch -------------------------------------------------------------------------
_MDADM = re.compile(r"^(?P<event>\w+) event on (?P<device>\S+?)(?::(?P<host>\S+))?$")
_MDSTAT = re.compile(r"^(?P<md>md\d+) : (?P<status>.+)\n.*?(?P<counts>\[\d+/\d+\]) (?P<map>\[[U_]+\])", re.M)


def mdadm(mail: InboundMail) -> AlertSummary | None:
    m = _MDADM.match(mail.subject)
    text = mail.body or mail.text
    if not m or "mdadm" not in (mail.header_from + text).lower():
        return None
    on = re.search(r"running on (\S+)", text)
    host = m["host"] or (on[1] if on else "")
    device = re.search(r"component (?:device|devices) (\S+?)[.,]?\s", text)
    stat = _MDSTAT.search(text)
    value = f"{stat['counts']} {stat['map']}" if stat else ""
    pieces = [Piece(Role.STATE, m["event"]), Piece(Role.HOST, host), Piece(Role.PROBLEM, m["device"]),
              Piece(Role.VALUE, value, ": "), Piece(Role.DETAIL, f"component {device[1]}" if device else "", ", ")]  # fmt: skip
    recovery = m["event"] in ("RebuildFinished", "SpareActive")
    return summary_of("mdadm", pieces, host, (host, m["device"]), recovery, ("banner", "sign-off", "mdstat"))


_FAIL2BAN = re.compile(
    r"^\[Fail2Ban\] (?P<jail>[\w.-]+): (?:(?P<action>banned|unbanned) (?P<ip>\S+) from (?P<host>\S+)|"
    r"(?P<summary>summary) from (?P<shost>\S+)|(?P<other>(?:started|stopped)) on (?P<ohost>\S+))",
    re.IGNORECASE,
)
# IPv4, or IPv6 with `::` or all eight groups (never a time such as 11:09:44)
_IP = re.compile(
    r"(?<![\w.:])(?:\d{1,3}(?:\.\d{1,3}){3}|(?=[0-9a-f:]*::|(?:[0-9a-f]{1,4}:){7})[0-9a-f:]{3,39})(?![\w.:])",
    re.I,
)


def fail2ban(mail: InboundMail) -> AlertSummary | None:
    """sendmail-whois(-lines) and sendmail-buffered: the jail, the address(es) banned, the host;
    the whois record and the log lines are left out."""
    m = _FAIL2BAN.match(mail.subject)
    if not m:
        return None
    host = m["host"] or m["shost"] or m["ohost"]
    if m["summary"]:
        ips = list(dict.fromkeys(_IP.findall(mail.text)))
        action, value = "banned", ", ".join(ips)
    else:
        action, value = (m["action"] or m["other"] or "").lower(), m["ip"] or ""
    attempts = re.search(r"after\s+(\d+)\s+attempts", mail.text)
    pieces = [Piece(Role.PROBLEM, m["jail"]), Piece(Role.HOST, host), Piece(Role.STATE, action, ": "),
              Piece(Role.VALUE, value), Piece(Role.DETAIL, f"after {attempts[1]} attempts" if attempts else "", " ")]  # fmt: skip
    return summary_of("fail2ban", pieces, host, (host, m["jail"], m["ip"] or ""), action == "unbanned",
                    ("greeting", "whois", "log lines", "sign-off"))  # fmt: skip


_OSSEC_SUBJECT = re.compile(r"^(?P<tool>OSSEC|Wazuh) (?:HIDS )?[Nn]otification - (?P<rest>.+)$")
_OSSEC_FROM = re.compile(r"^Received From: \(?(?P<host>[^)\s]+)\)?", re.MULTILINE)
_OSSEC_RULE = re.compile(
    r'^Rule: (?P<id>\d+) fired \(level (?P<level>\d+)\) -> "(?P<what>[^"]+)"', re.MULTILINE
)


def ossec(mail: InboundMail) -> AlertSummary | None:
    """OSSEC and Wazuh alert mail, one or several alerts: level, each host with what fired."""
    m = _OSSEC_SUBJECT.match(mail.subject)
    if not m:
        return None
    hosts = _OSSEC_FROM.findall(mail.text)
    rules = _OSSEC_RULE.findall(mail.text)
    if not hosts or not rules:
        return None
    level = max(int(level) for _, level, _ in rules)
    pairs = list(
        dict.fromkeys(f"{h}: {what.rstrip('.')}" for h, (_, _, what) in zip(hosts, rules, strict=False))
    )
    pieces = [Piece(Role.STATE, f"level {level}"), Piece(Role.PROBLEM, m["tool"]), Piece(Role.HOST, hosts[0]),
              Piece(Role.DETAIL, "; ".join(pairs), " ")]  # fmt: skip
    return summary_of("ossec", pieces, hosts[0], (m["tool"], *dict.fromkeys(hosts), rules[0][0]), False,
                    ("banner", "log portion", "end marker"))  # fmt: skip


_LOGWATCH = re.compile(r"^Logwatch for (?P<host>\S+)")
_SECTION_BEGIN = re.compile(r"^-{3,} (?P<name>.+?) Begin -{3,}$")
# `... node_exporter : 1 Time(s)`: how often, which the phone does without
_TIMES = re.compile(r"(?:^|\s*:?\s+)\d+\s+Time(?:s|\(s\)):?(?=\s|$)\s*")


def logwatch(mail: InboundMail) -> AlertSummary | None:
    """The day's report: which sections hold trouble, with the line that names it and the
    line after it (`WARNING: Out of memory killer killed these executables` / `php-fpm8.2`)."""
    m = _LOGWATCH.match(mail.subject)
    if not m:
        return None
    found: dict[str, list[str]] = {}  # by section, each named once
    section = ""
    lines = [line.strip() for line in mail.text.splitlines()]
    for n, line in enumerate(lines):
        if (begin := _SECTION_BEGIN.match(line)) is not None:
            section = begin["name"]
        elif section and troubled(line) and not line.startswith("-"):
            after = lines[n + 1] if n + 1 < len(lines) and not lines[n + 1].startswith("-") else ""
            item = _TIMES.sub("", f"{line.rstrip(':')}" + (f" {after}" if after else ""))
            found.setdefault(section, []).append(item)
    count = sum(map(len, found.values()))
    pieces = [Piece(Role.PROBLEM, "Logwatch"), Piece(Role.HOST, m["host"]),
              Piece(Role.STATE, f"{count} issue(s)" if count else "no issues", ": "),
              Piece(Role.DETAIL, " / ".join(f"{name}: {'; '.join(items)}" for name, items in found.items()), ": ")]  # fmt: skip
    return summary_of(
        "logwatch", pieces, m["host"], (m["host"], "logwatch"), False, ("banner", "report sections")
    )


def smartd(mail: InboundMail) -> AlertSummary | None:
    m = _SMART.match(mail.subject)
    if not m:
        return None
    devices = re.findall(r"^Device: (.+)$", mail.text, re.MULTILINE)
    pieces = [Piece(Role.STATE, "SMART"), Piece(Role.HOST, m["host"]), Piece(Role.PROBLEM, m["what"], ": "),
              Piece(Role.DETAIL, "; ".join(devices), ": ")]  # fmt: skip
    return summary_of(
        "smartd", pieces, m["host"], (m["host"], m["what"]), False, ("banner", "device info", "DNS domain")
    )


def apcupsd(mail: InboundMail) -> AlertSummary | None:
    m = _APC.match(mail.subject)
    if not m or ("apcupsd" not in (mail.header_from + mail.text).lower() and "STATUS" not in mail.text):
        return None
    f = fields_of(mail.text)
    first = next((line for line in mail.text.splitlines() if line.strip()), "")
    said = re.sub(r"^.*?\d{4}\s+", "", first)  # drop the date apccontrol writes first
    status = ", ".join(f"{k.upper()} {f[k]}" for k in ("status", "bcharge", "timeleft") if f.get(k))
    event = m["event"]
    pieces = [Piece(Role.PROBLEM, f"UPS {m['ups']}"), Piece(Role.HOST, f"on {m['host']}"),
              Piece(Role.STATE, event, ": "), Piece(Role.VALUE, status, ": "), Piece(Role.DETAIL, said, "; ")]  # fmt: skip
    recovery = bool(re.search(r"returned|restored|online", event, re.IGNORECASE))
    return summary_of(
        "apcupsd", pieces, m["host"], (m["host"], m["ups"]), recovery, ("date", "apcaccess dump")
    )


def nut(mail: InboundMail) -> AlertSummary | None:
    if "ups" not in mail.subject.lower() and "ups" not in mail.text.lower():
        return None
    m = _NUT.search(mail.subject) or _NUT.search(mail.text)
    if not m:
        return None
    ups, event = m["ups"], m["event"].lower()
    host = ups.partition("@")[2] or ups
    pieces = [Piece(Role.PROBLEM, "UPS"), Piece(Role.HOST, ups), Piece(Role.STATE, event, ": ")]
    recovery = event in ("on line power", "communications restored")
    return summary_of("nut", pieces, host, (ups,), recovery, ("subject",))


def synology(mail: InboundMail) -> AlertSummary | None:
    m = _SYNOLOGY.match(mail.subject)
    if not m or f"From {m['host']}" not in mail.text:
        return None
    kept = [
        line.strip()
        for line in mail.text.splitlines()
        if line.strip() and not re.match(r"^(Dear user|From \S+|Dear .+,)$", line.strip())
    ]
    pieces = [Piece(Role.PROBLEM, "NAS"), Piece(Role.HOST, m["host"]),
              Piece(Role.DETAIL, " ".join(kept) or m["event"], ": ")]  # fmt: skip
    return summary_of(
        "synology", pieces, m["host"], (m["host"], m["event"]), False, ("greeting", "signature")
    )


# ---- systemd: `systemctl status` of a failed unit, as OnFailure= scripts mail it --------------
# `× backup.service - Nightly backup` (● and ○ for other states), then `Active: failed (...)`
_UNIT = re.compile(r"^[×●○*]?\s*(?P<unit>[\w@:.\\-]+\.(?:service|timer|socket|mount|path|target|scope))"
                   r"(?: - (?P<what>.+))?$", re.M)  # fmt: skip
_ACTIVE = re.compile(
    r"^\s*Active: (?P<state>failed|inactive|activating|deactivating|active)\b(?P<why>[^\n]*)", re.M
)
_EXIT = re.compile(r"^\s*Main PID: \d+ \((?:code=\w+, )?(?P<status>status=[\w/]+)\)", re.M)
# A journal line: `Dez 03 02:30:14 fileserver tar[48213]: ...` (the month as the locale says it)
_JOURNAL = re.compile(r"^\S{3,5}\.? \d{1,2} \d{2}:\d{2}:\d{2} (?P<host>\S+) (?P<proc>[^\s\[:]+)(?:\[\d+\])?: (?P<msg>.+)$",
                      re.M)  # fmt: skip


def systemd(mail: InboundMail) -> AlertSummary | None:
    text = mail.body or mail.text
    if "Loaded:" not in text or "Active: " not in text:
        return None  # before the regexes: _UNIT backtracks on every long line of every mail
    active, unit = _ACTIVE.search(text), _UNIT.search(text)
    if active is None or unit is None or "Loaded:" not in text:
        return None
    journal = list(_JOURNAL.finditer(text))
    named = re.search(r"^\s*Hostname: (\S+)", text, re.M)
    host = named[1] if named else (journal[0]["host"] if journal else "")
    # The unit's own output says what went wrong; systemd's lines only that it did.
    own = [j["msg"] for j in journal if j["proc"] != "systemd" and troubled(j["msg"])]
    own += [j["msg"] for j in journal if j["proc"] != "systemd" and j["msg"] not in own]
    status = _EXIT.search(text)
    pieces = [Piece(Role.STATE, active["state"]), Piece(Role.HOST, host, " "), Piece(Role.PROBLEM, unit["unit"], " "),
              Piece(Role.VALUE, status["status"] if status else "", ": "),
              Piece(Role.DETAIL, " / ".join(own[:2]), ": ")]  # fmt: skip
    recovery = active["state"] == "active"
    return summary_of(
        "systemd", pieces, host, (host, unit["unit"]), recovery, ("systemctl status", "journal")
    )
