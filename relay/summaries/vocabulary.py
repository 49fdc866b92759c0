"""The words and shapes of alert mail: field names by what they say, state words, and the
boilerplate no phone needs (rules, banners, greetings, sign-offs, automatic-mail notes, links,
dates). Shared by the reading (reading.py) and the recognisers; it knows no sender."""

from __future__ import annotations

import re
import unicodedata

from relay.formatters import segments
from relay.model import Role

# Field names, lower-case, by what they say. Exact names first; a name that ends in one of the
# host words (`affected host`, `имя узла`) counts as a host too.
# fmt: off
KEYS: dict[str, Role] = {
    **dict.fromkeys((
        "host", "hostname", "host name", "host alias", "server", "node", "instance", "machine", "system",
        "computer", "target", "hosts", "nas", "ups", "узел", "узел сети", "сервер", "хост", "компьютер",
        "имя узла", "система", "printer", "vm", "vm name", "принтер", "agent", "agent name", "instanceid",
        "instance id", "агент",
    ), Role.HOST),
    **dict.fromkeys((
        "state", "status", "severity", "level", "priority", "event", "event type", "notification type",
        "alert state", "current state", "result", "termination", "важность", "статус", "состояние", "событие",
        "уровень", "результат", "тип уведомления", "state change", "new state", "alarm state",
    ), Role.STATE),
    **dict.fromkeys((
        "service", "check", "trigger", "problem", "problem name", "alert", "alert name", "alertname",
        "monitor", "monitor name", "rule", "rule name", "job", "job name", "task", "task name", "test",
        "check name", "service name", "sensor", "проблема", "сервис", "служба", "триггер", "задание",
        "проверка", "задача", "датчик", "module", "module name", "metricname", "unit", "alarm name", "модуль",
    ), Role.PROBLEM),
    **dict.fromkeys((
        "summary", "description", "message", "info", "output", "additional info", "details", "detail",
        "error", "reason", "cause", "service output", "host output", "check output", "text", "сообщение",
        "описание", "информация", "ошибка", "причина", "вывод", "подробности", "reason for state change",
    ), Role.DETAIL),
    **dict.fromkeys((
        "value", "values", "current value", "operational data", "metric value", "reading", "usage",
        "оперативные данные", "значение", "текущее значение", "data",
        "return code", "exit code", "exit status", "error code", "код возврата", "код ошибки", "rückgabewert",
        # the file a warning is about (`Datei: /usr/bin/netstat`, `File: /etc/shadow`)
        "file", "filename", "file name", "datei", "fichier", "archivo", "plik", "bestand", "soubor", "файл",
    ), Role.VALUE),
}
# fmt: on

# Words of trouble: English and Russian, and the failure words of the European languages alert
# mail comes in (as vocabulary.py's greetings and sign-offs): German, French, Spanish, Italian,
# Portuguese, Polish, Dutch, Czech. "Not successful" and "never" count (a tool saying that
# something did not happen is reporting trouble); bare "no" / "none" words do not.
TROUBLE = re.compile(
    r"\b(?:err(?:or)?|errors|fail(?:ed|ure|s)?|fatal|critical|warn(?:ings?)?|could not|cannot|can't|unable|denied|"
    r"refused|timed? ?out|not found|no such|down|unreachable|degraded|faulted|offline|never|bann?(?:ed)?|blocked|broken|"
    r"ошибк\w*|сбой|не удалось|недоступ\w*|отказ\w*|превышен\w*|никогда|"
    r"fehler\w*|fehlgeschlagen|gescheitert|ausgefallen|nicht (?:mehr )?erfolgreich|niemals|kritisch|warnung|"
    r"échec|échoué\w*|erreur\w*|impossible|jamais|critique|"
    r"fallo|fall[oó]|fallid[oa]|no se pudo|nunca|cr[ií]tic[oa]|"
    r"errore|fallit[oa]|non riuscit[oa]|"
    r"erro|falha\w*|falhou|"
    r"błąd\w*|błęd\w*|niepowodzeni\w*|nie powiod\w*|niepowiod\w*|nie udało|nigdy|krytyczn\w*|"
    r"fout\w*|mislukt|nooit|kritiek|"
    r"chyb[ay]\w*|selhal\w*|selhání|nepodařil\w*|nikdy|kritick\w*)\b",
)  # lower-case: `troubled` searches the lower-cased text, in a fifth of a case-insensitive search's time


def troubled(text: str) -> bool:
    """Whether the text has a word of trouble, not denied (`AIDE produced no errors`)."""
    low = text.lower()
    if TROUBLE.search(low) is None:
        return False
    return TROUBLE.search(_NO_TROUBLE.sub("", low)) is not None


# `no errors`, `0 failures`, `without warnings`, `без ошибок`, `keine Fehler`: trouble denied
_NO_TROUBLE = re.compile(
    r"\b(?:no|0|zero|without|keine?|ohne|aucune?|sans|sin|ningún|nessun[oa]?|без|нет)\s+"
    r"(?:errors?|failures?|warnings?|problems?|issues?|fehler\w*|erreurs?|errores|errori|ошиб\w*|сбо\w*)\b"
)

# Fields no phone needs: when, where to click, which id, who wrote it.
# fmt: off
IGNORED = frozenset((
    "ack", "acknowledged", "address", "age", "alert id", "annotations", "author", "cc", "comment", "comments",
    "dashboard", "date", "date/time", "end time", "event id", "fingerprint", "from", "generator url",
    "generatorurl", "host address", "id", "ip", "ip address", "ipv4", "ipv6", "user agent", "user-agent", "referer",
    "referrer", "remote address", "client ip", "job id", "jobid", "labels", "link",
    "notification number", "original problem id", "panel", "problem id", "runbook", "runbook url", "sent",
    "silence", "since", "source", "start time", "started", "subject", "time", "timestamp", "to", "url",
    "when", "адрес", "время", "дата", "идентификатор", "ссылка",
))
# fmt: on

_FIELD = re.compile(r"^\s*(?:[-*•]\s*)?(?P<key>[^\W\d][^:=\n]{0,38}?)\s*(?::(?=\s|$)|=)\s*(?P<value>.*?)\s*$")
_URL = re.compile(r"(?:https?|ftp)://\S+|(?<![\w-])www\.[\w-]+\.[a-z]{2,}\S*", re.IGNORECASE)
_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,200}>")
_MAP = re.compile(r"map\[(?P<inner>[^\]]*)\]")
_RULE = re.compile(r"^\W*([*#=~%_+.\-])\1{2,}\W*$|^[\s*#=~%_+\-]{3,}$")
_BANNER = re.compile(r"^\s*([*#=~%-])\1{2,}\s*(?P<title>.*?)\s*\1{3,}\s*$")
# The greetings and sign-offs of the languages alert mail comes in most (English, Russian, and
# the European ones a tool's translations or an operator's template use), from the languages'
# letter-writing conventions, not from any one tool's mail.
_GREETING = re.compile(
    r"^(?:[\w ]{1,20},\s*)?(?:hi|hello|hey|dear\b.{0,40}|greetings|good (?:morning|afternoon|evening)|hallo|"
    r"bonjour|здравствуйте|добрый (?:день|вечер)|доброе утро|привет|уважаем\w*\b.{0,40}|"
    r"(?:sehr )?geehrte[rs]?\b.{0,40}|liebe[rs]?\b.{0,30}|guten (?:tag|morgen|abend)|moin|servus|"  # de
    r"ch[eè]re?s?\b.{0,30}|madame|monsieur|salut|bonsoir|"  # fr
    r"estimad[oa]s?\b.{0,30}|hola|buen[oa]s (?:d[ií]as|tardes|noches)|querid[oa]s?\b.{0,30}|"  # es
    r"gentil[ei]\b.{0,40}|egregi[oa]\b.{0,30}|ciao|buongiorno|buonasera|car[oa]\b.{0,30}|"  # it
    r"prezad[oa]s?\b.{0,30}|ol[aá]|bom dia|boa (?:tarde|noite)|"  # pt
    r"drog[ia]\b.{0,30}|szanown[aiy]\b.{0,40}|dzie[nń] dobry|witaj\w*|"  # pl
    r"geachte\b.{0,40}|beste\b.{0,30}|goede(?:morgen|middag|navond)|"  # nl
    r"v[aá][zž]en[aáéý]\b.{0,40}|dobr[ýy] den|ahoj)"  # cs
    r"(?:\s+[\w-]+){0,3}[\s,!.:]*$",
    re.IGNORECASE,
)
_SIGNOFF = re.compile(
    r"^(?:(?:best |kind |warm )?regards|thanks?(?: you)?|cheers|sincerely|your faithful employee|"
    r"(?:faithfully |sincerely )?yours(?: truly| faithfully)?|с уважением|спасибо|всего доброго|"
    r"mit freundlichen gr[üu](?:ß|ss)en|(?:viele|beste|liebe|freundliche) gr[üu](?:ß|ss)e|gr[üu](?:ß|ss)e?|danke|"  # de
    r"cordialement|bien (?:à|a) vous|salutations|merci|"  # fr
    r"(?:un )?saludos?(?: cordiales)?|atentamente|cordialmente|gracias|"  # es
    r"(?:cordiali|distinti) saluti|saluti|grazie|"  # it
    r"atenciosamente|cumprimentos|obrigad[oa]|"  # pt
    r"pozdrawiam|z powa[żz]aniem|dzi[eę]kuj[eę]|"  # pl
    r"met vriendelijke groet(?:en)?|groeten|bedankt|"  # nl
    r"s pozdravem|d[eě]kuji)\b[\s,!.\w-]{0,40}$",
    re.IGNORECASE,
)
_AUTOMATIC = re.compile(
    r"automatically generated|auto-?generated|(?:do|please do) not reply|don'?t reply|no-?reply|"
    r"(?:this|the) (?:e-?mail|message|notification|alert|report) (?:was|is|has been) (?:sent|generated|"
    r"created|triggered)|you (?:are receiving|received|get) this|unsubscribe|notification settings|"
    r"manage (?:your )?(?:notifications|alerts|subscriptions)|sent (?:by|from) \S+ (?:at|on)\b|"
    r"no longer wish to receive|generated by|this message was generated|sent by \S+(?: v?[\d.]+)?\W*$|^(?:©|\(c\))\s*\d{4}|copyright \d{4}|"
    r"(?:notification|message|e-?mail) was delivered|(?:notification|alert|message|report|e-?mail) generated\b|сформировано автоматически|создано автоматически|"
    r"не отвечайте\b|(?:отправлено|создано|сформировано) автоматически|"
    r"automatic (?:alert|notification|monitoring|e-?mail|reporting) system|^we have (?:some )?(?:bad|good) news\b|"
    r"^(?:an? |the )?alert (?:for .{1,80}? )?has been (?:triggered|resolved|raised|cleared|fired)\b|"
    r"автоматическ\w+ (?:сообщение|уведомление|рассылк)",
    re.IGNORECASE,
)
# What a tool says of itself, not of the trouble: `A new system event occurred on your nas01 on
# ...`, `Please inspect this machine, because it may be infected.`, ping's own first line.
_SELF_NOTE = re.compile(
    r"^(?:an? )?new (?:system |security )?(?:event|alert|notification|incident) (?:has )?(?:occurred|arrived)\b|"
    r"^please (?:inspect|check|review|investigate|examine) (?:this|the|your) (?:machine|host|server|system|"
    r"computer|device)\b|"
    r"^PING \S+ \([\d.:a-fA-F]+\) \d+\(\d+\) bytes of data\.?$",
    re.IGNORECASE,
)
# A stack trace's frames and joints (Python's and Java's): where the code was, not what failed;
# the exception's own line (`ConnectionError: ...`) is kept
_STACK = re.compile(
    r"^(?:Traceback \(most recent call last\):|File \"[^\"]+\", line \d+, in \S+|"
    r"at [\w.$<>]+\([\w.:$ -]*\)|\.\.\. \d+ more|"
    r"During handling of the above exception.*another exception occurred:?|"
    r"The above exception was the direct cause of the following exception:|[\^~ ]*\^[\^~ ]*)$"
)
# A unified diff's file and hunk lines (`--- setuid.today 2026-12-04 ...`, `@@ -126,0 +127 @@`):
# its `+` and `-` lines are what changed
_DIFF_HEAD = re.compile(
    r"^(?:(?:---|\+\+\+) \S+(?:\s+\d{4}-\d{2}-\d{2}[ T][\d:.]+.*)?|@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@.*)$"
)
# A program telling what it is doing (`Reading package lists...`, `Rotating last weeks Backup...`,
# `Building dependency tree... Done`): what it found follows
_PROGRESS = re.compile(
    r"^[A-Z][a-z]+ing\b[^:]{0,60}?(?:\.\.\.|…)(?:\s*(?:done|ok|fertig|готово)\.?)?$", re.IGNORECASE
)
# A command line echoed (`vzdump 101 105 --storage nfs --mailnotification failure --mode snapshot`):
# its options name what it may do, not what happened
_OPTION = re.compile(r"(?<!\S)--[a-z][\w-]*")
_OPTIONS = 3
# A check marked as passing (`✅ [RESPONSE_TIME] < 300`, `[OK] sshd running`): what is fine is no news
_PASSED = re.compile(r"^\s*(?:[\u2705\u2714\u2713\u2611]|\[(?:OK|PASS|PASSED)\]\s)")
# `... Check OMSA for further details - https://SQL01:1311.`: the tool's pointer to itself, at the
# end of a line that says something first
POINTER = re.compile(
    r"(?:^|(?<=[.!?]) )(?:please )?(?:check|see|view|refer to|visit|consult|open)\b.{0,60}?\bfor "
    r"(?:further|more|additional|full) (?:details|information|info)\b.*$",
    re.IGNORECASE,
)
_LINK_WORDS = re.compile(
    r"^(?:view|open|see|go to|click|show|silence|details?|more info|manage|acknowledge|ack|dashboard|"
    r"panel|source|runbook|edit|mute|visit|log ?in|sign in|перейти|открыть|подробнее|смотрите)\b",
    re.IGNORECASE,
)
# `Go to Pandora FMS Console`, `Open the dashboard`: a button's words, the address gone with it
_WHERE_TO_CLICK = re.compile(
    r"\b(?:console|dashboard|portal|page|web ?(?:ui|interface)|ui|website|app)\W*$", re.I
)
# A plugin's performance data after its output (`... |time=0.0029s;;;0.0 size=497B;;;0`): for graphs
_PERF_ITEM = r"(?:'[^']*'|[\w./:-]+)=[-+]?\d[\d.]*[a-zA-Z%]*(?:;[-+\d.:~@]*){0,4}"
PERFDATA = re.compile(rf"[ \t]*\|[ \t]*{_PERF_ITEM}(?:[ \t]+{_PERF_ITEM})*[ \t]*$", re.MULTILINE)
_DATE = re.compile(
    r"^[(\[]?\s*(?:(?:[A-Z][a-z]{2},? )?\d{1,4}[./-](?:\d{1,2}|[A-Za-z]{3})[./-]\d{1,4}"
    r"(?:[ T]\d{1,2}:\d{2}(?::\d{2})?(?:\.\d+)?)?(?:\s*(?:[+-]\d{2}:?\d{2}|Z|UTC|GMT|[A-Z]{3,4}))?"
    r"|\w{3},? \d{1,2} \w{3} \d{4} \d{2}:\d{2}\S*(?: \S+)?"
    r"|\w{3} \w{3} +\d{1,2} \d{2}:\d{2}(?::\d{2})?(?: [A-Z]{2,5})? \d{4})\s*[)\]]?\.?$"
)
_PAIRS = re.compile(r"(?<![^\s,{(])(?P<key>[A-Za-z_][\w.-]{0,40})=(?P<value>\"[^\"]*\"|[^\s,})]+)")
STATE_WORD = re.compile(
    r"(?<!\w)(PROBLEM|RECOVERY|RECOVERED|RESOLVED|FIRING|TRIGGERED|ALERT|ALERTING|ALARM|CRITICAL|CRIT|WARNING|"
    r"WARN|OK|UP|DOWN|UNREACHABLE|UNKNOWN|FAILED|FAILURE|FAIL|FAILING|PASSING|ERROR|SUCCESS|SUCCEEDED|SUCCESSFUL|"
    r"DEGRADED|"
    r"ACKNOWLEDGEMENT|ACKNOWLEDGED|FLAPPING|CLEAR|CLEARED|RESTORED|BANNED|Проблема|Решена|Восстановлен\w*|"
    r"Авария|Ошибка|Сбой|Недоступ\w*|Предупреждение|Критическ\w*)(?!\w)",
    re.IGNORECASE,
)
_COUNT = re.compile(
    r"^(?:you have )?\(?\d+\)? (?:firing|resolved)(?: (?:alerts?|alert\(s\)|instances?))?\b|^\d+ alerts? for \S+=",
    re.IGNORECASE,
)
_TROUBLE_WORD = re.compile(
    r"\b(?:fail\w*|error\w*|down|critical|warning|fatal|out of memory|not found|denied|ошибк\w*|сбой|не удалось)\b",
    re.IGNORECASE,
)
_SECTION = re.compile(r"^(?:labels|annotations|source|silence|common labels|group labels)\s*:?\s*$", re.I)
# A label table row as HTML mail renders it: `instance db01:9100`
_LABEL_ROW = re.compile(r"^(?P<key>[a-z_][\w.]{0,40})\s+(?P<value>\S.*)$")
# A table's head: `Metric name Value`, `Name Status Start time ...`, `Host State Output`
_TABLE_HEAD = re.compile(
    r"^(?P<first>metric name|metric|name|host|hostname|server|node|vm|object|series|device|узел|имя)\s+"
    r"(?P<second>value|status|state|result|состояние|статус|значение)\b",
    re.IGNORECASE,
)
_TABLE_ROW = re.compile(r"^(?P<first>[\w][\w.:@/-]{0,60})\s+(?P<second>\S+)")


def plain(text: str) -> str:
    """Typography and accents GSM-7 lacks folded to GSM-7 look-alikes, and pictographs (emoji,
    symbols, variation selectors) gone: one 🔴 would make a Latin text UCS-2, 70 characters a
    part instead of 160."""
    text = segments.fold_accents(segments.fold_to_gsm(PERFDATA.sub("", text) if "|" in text else text))
    kept = "".join(ch for ch in text if not _pictograph(ch))
    if kept == text:
        return text
    kept = re.sub(r"([(\[])\s+", r"\1", re.sub(r"\s+([)\]])", r"\1", kept))  # `[🔴 Down]` -> `[Down]`
    return re.sub(r"[ \t]{2,}", " ", kept).strip()


def _pictograph(ch: str) -> bool:
    if ch in segments.GSM_ALL:
        return False
    if ord(ch) > 0xFFFF or 0xFE00 <= ord(ch) <= 0xFE0F or ch == "\u200d":
        return True
    return unicodedata.category(ch) in ("So", "Sk") and ch not in "°№"


# "instance" names a machine after these; after most other words (plugin, type, database,
# class) it names an instance of that thing
_INSTANCE_OF_A_HOST = frozenset(
    ("ec2", "vm", "server", "host", "affected", "target", "source", "compute", "cloud")
)


def role_of(key: str) -> Role | None:
    name = " ".join(key.lower().replace("_", " ").split())
    if name in KEYS:
        return KEYS[name]
    last = name.rsplit(" ", 1)[-1]
    if last in ("host", "hostname", "server", "node", "узел", "сервер", "хост"):
        return Role.HOST
    if last == "instance" and name.split()[-2] in _INSTANCE_OF_A_HOST:
        return Role.HOST  # `EC2 instance`, `affected instance`; not `Plugin instance`, `Type instance`
    if last in ("job", "task", "check", "service", "trigger", "alert", "monitor", "задание", "задача"):
        return Role.PROBLEM  # `Backup job: SQL Nightly`, `Sync task: ...`
    if last in ("description", "message", "summary", "reason", "output", "описание", "сообщение"):
        return Role.DETAIL  # `Alert description: ...`, `Reason for failure: ...`
    return None


def boilerplate(line: str) -> str:
    """The kind of boilerplate a line is, or "" when it may say something."""
    if _RULE.match(line) or _BANNER.match(line):
        return "banner"
    if _GREETING.match(line):
        return "greeting"
    if _SIGNOFF.match(line):
        return "sign-off"
    if _AUTOMATIC.search(line):
        return "automatic-mail note"
    if _SELF_NOTE.search(line) or POINTER.match(line):
        return "tool's own note"
    if _STACK.match(line):
        return "stack trace"
    if _DIFF_HEAD.match(line):
        return "diff header"
    if _PASSED.match(line):
        return "passing check"
    if _PROGRESS.match(line):
        return "progress"
    if len(_OPTION.findall(line)) >= _OPTIONS:
        return "command line"
    if _URL.search(line):
        rest = _URL.sub("", line).strip(" :-()<>[]|")
        if len(rest.split()) <= 5 or _LINK_WORDS.match(rest):
            return "link"
    if _LINK_WORDS.match(line) and (
        line.rstrip().endswith((":", ">", "»"))
        or (len(line.split()) <= 3 and not _TROUBLE_WORD.search(line))
        or (len(line.split()) <= 6 and _WHERE_TO_CLICK.search(line) and not _TROUBLE_WORD.search(line))
    ):
        return "link"  # `View alert`, `Silence`, `Go to the Alerts page:` (the address was a button)
    if _COUNT.match(line):
        return "alert count"
    if _DATE.match(line):
        return "date"
    return ""
