"""smsc-relay(8) in roff, from the command line's own argument parser: every command and
subcommand, its options, help and examples, so that the page cannot drift from the program.

    python scripts/manpage.py [OUTPUT]      (stdout without OUTPUT; `make install` runs it)

It imports the relay it documents: run it with the interpreter the relay is installed in.
SOURCE_DATE_EPOCH, when set, dates the page (reproducible builds); else today.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import os
import re
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from relay import __version__
from relay.cli import main as cli
from relay.errors import Exit

PROG = "smsc-relay"
FILES = [
    (cli.DEFAULT_CONFIG, "the configuration; every option is explained in the file as installed"),
    ("/etc/smsc-relay/password", "the provider password (root and the group smsc-relay may read it)"),
    ("/var/lib/smsc-relay/spool.db", "the SQLite spool: every accepted message until it is done"),
    ("/var/lib/smsc-relay/outbox/", "dry run (provider.outbox): provider mails as files, not sent"),
    ("/etc/systemd/system/smsc-relay.service", "the systemd unit"),
    ("/opt/smsc-relay/share/doc/install.md", "installing, configuring and watching the relay"),
]
SIGNALS = [
    ("SIGTERM, SIGINT", "stop accepting mail, finish what is in flight (delivery.shutdown_timeout), exit"),
    ("SIGHUP", "reload the configuration; what only a restart changes is named in the log"),
]


def esc(text: str) -> str:
    """Text safe in roff: backslashes, minus signs, non-ASCII as named Unicode characters."""
    out = text.replace("\\", "\\e").replace("-", "\\-")
    return "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in out)


def line(text: str) -> str:
    """One input line of text: a leading . or ' would be read as a request."""
    text = esc(text)
    return "\\&" + text if text.startswith((".", "'")) else text


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    """Every (sub)command under parser, depth first, in the order the parser lists them."""
    seen: set[int] = set()
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {a.dest: a.help or "" for a in action._choices_actions}
        for name, sub in action.choices.items():
            if id(sub) in seen:  # an alias of one already listed
                continue
            seen.add(id(sub))
            yield (*path, name), helps.get(name, ""), sub
            yield from commands(sub, (*path, name))


LONG_CHOICES = 40  # characters: a longer {a,b,...} is named by its metavar, the choices listed in the help


def _choices(action: argparse.Action) -> str | None:
    if action.choices is None or isinstance(action, argparse._SubParsersAction):
        return None
    return ",".join(str(c) for c in action.choices)


def _metavar(action: argparse.Action) -> str:
    if isinstance(action.metavar, str):
        return action.metavar
    choices = _choices(action)
    if choices is not None and len(choices) <= LONG_CHOICES:
        return "{" + choices + "}"
    return action.dest if not action.option_strings else action.dest.upper()


def _args(action: argparse.Action) -> str:
    """The argument(s) an action takes, as roff: FILE, [FILE], ID..."""
    if action.nargs == 0:
        return ""
    m = f"\\fI{esc(_metavar(action))}\\fR"
    if action.nargs == "?":
        return f"[{m}]"
    if action.nargs == "*":
        return f"[{m} ...]"
    if action.nargs == "+":
        return f"{m} ..."
    if isinstance(action.nargs, int) and action.nargs > 1:
        return " ".join([m] * action.nargs)
    return m


def _shown(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        a
        for a in parser._actions
        if a.help is not argparse.SUPPRESS and not isinstance(a, argparse._SubParsersAction)
    ]


def synopsis(path: tuple[str, ...], parser: argparse.ArgumentParser) -> str:
    words = [f"\\fB{esc(' '.join((PROG, *path)))}\\fR"]
    for a in _shown(parser):
        if isinstance(a, argparse._HelpAction):
            continue
        if a.option_strings:
            flag = f"\\fB{esc(a.option_strings[0])}\\fR"
            taken = " ".join(filter(None, [flag, _args(a)]))
            words.append(taken if a.required else f"[{taken}]")
        else:
            words.append(_args(a))
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            words.append(f"\\fI{esc(str(a.metavar or 'COMMAND'))}\\fR ...")
    return " ".join(words)


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:  # argparse's own expansion: %(default)s, %(prog)s ...
        params = {k: v for k, v in vars(action).items() if v is not argparse.SUPPRESS}
        params["prog"] = prog
        if params.get("choices") is not None:
            params["choices"] = ", ".join(str(c) for c in params["choices"])
        text = text % params
    choices = _choices(action)
    if choices is not None and len(choices) > LONG_CHOICES and not isinstance(action.metavar, str):
        text = f"{text} (one of: {choices.replace(',', ', ')})".lstrip()
    return text


def options(actions: list[argparse.Action], prog: str) -> list[str]:
    out: list[str] = []
    for a in actions:
        if a.option_strings:
            flags = ", ".join(f"\\fB{esc(o)}\\fR" for o in a.option_strings)
            head = " ".join(filter(None, [flags, _args(a)]))
        else:
            head = _args(a)
        said = _help(a, prog)
        out += [".TP", head, *([line(said)] if said else [])]
    return out


def block(text: str) -> list[str]:
    """Preformatted text (examples written for RawDescriptionHelpFormatter), kept as it is."""
    return [".PP", ".nf", *(line(t) for t in text.strip("\n").splitlines()), ".fi"]


def prose(text: str) -> list[str]:
    return [".PP", *(line(t.strip()) for t in text.strip().splitlines())]


def written(parser: argparse.ArgumentParser, text: str) -> list[str]:
    """A description or epilog as --help shows it: kept as written under a Raw formatter, else
    filled; %(prog)s expanded as argparse does."""
    text = text.replace("%(prog)s", parser.prog)
    raw = isinstance(parser._get_formatter(), argparse.RawDescriptionHelpFormatter)
    return block(text) if raw else prose(text)


def tagged(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """A .TP list: each tag on its own line, its text indented below."""
    return [text for tag, what in pairs for text in (".TP", esc(tag), line(what))]


def exit_codes() -> list[tuple[int, str]]:
    """Exit's values with the comment each has in relay/errors.py (its name when none)."""
    try:
        source = inspect.getsource(Exit)
    except (OSError, TypeError):
        source = ""
    said = dict(re.findall(r"^\s+([A-Z_]+) = [^#\n]*#\s*(.+)$", source, re.MULTILINE))
    return sorted((int(e), said.get(e.name, e.name.lower())) for e in Exit)


def manpage(parser: argparse.ArgumentParser) -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    day = datetime.datetime.fromtimestamp(int(epoch), datetime.UTC).date() if epoch else datetime.date.today()
    summary = (parser.description or "").rstrip(".")
    r = [
        f'.TH SMSC\\-RELAY 8 "{day.isoformat()}" "{PROG} {__version__}" "System Administration"',
        ".nh",  # no hyphenation: command, option and state names stay whole
        ".ad l",  # options and long names: ragged right rather than stretched
        ".SH NAME",
        f"{esc(PROG)} \\- {esc(summary[:1].lower() + summary[1:])}",
        ".SH SYNOPSIS",
        synopsis((), parser),
        ".SH DESCRIPTION",
        *prose(
            f"""{PROG} accepts mail over SMTP from trusted clients, turns each message into an SMS
            request for SMS Centre (smsc.ru, smscentre.com), commits it to a durable spool before
            the client gets 250, and relays it to the provider. {PROG} serve is the daemon (under
            systemd: the unit smsc-relay.service); the other commands check its configuration,
            show what a mail becomes, and read or change its queue, also while it runs."""
        ),
        *prose(
            f"""Every command reads the configuration file given with -c, which may stand before or
            after the command (default: ${cli.CONFIG_ENV}, else {cli.DEFAULT_CONFIG})."""
        ),
        ".SH OPTIONS",
        *options(_shown(parser), parser.prog),
        ".SH COMMANDS",
    ]
    for path, helptext, sub in commands(parser):
        r += [f'.SS "{esc(" ".join(path))}"', synopsis(path, sub), ".br"]
        r += prose(helptext) if helptext else []
        r += written(sub, sub.description) if sub.description else []
        # -c is the same everywhere: in the synopsis, explained once under OPTIONS
        shown = [a for a in _shown(sub) if not isinstance(a, argparse._HelpAction) and a.dest != "config"]
        r += [".RS", *options(shown, sub.prog), ".RE"] if shown else []
        r += written(sub, sub.epilog) if sub.epilog else []
    r += [".SH EXIT STATUS", *tagged((str(code), what) for code, what in exit_codes())]
    r += [
        ".SH ENVIRONMENT",
        ".TP",
        f"\\fB{cli.CONFIG_ENV}\\fR",
        "the configuration file when -c is not given",
    ]
    r += [".TP", "\\fBSMSC_RELAY_DEBUG\\fR", line("1: an internal error prints its traceback")]
    loop = "serve's event loop: uvloop when it is installed (the default), asyncio for asyncio's own"
    r += [".TP", "\\fBSMSC_RELAY_LOOP\\fR", line(loop)]
    r += [".SH SIGNALS", *tagged(SIGNALS)]
    r += [".SH FILES", *tagged(FILES)]
    r += [".SH SEE ALSO", "\\fBsystemd.exec\\fR(5), \\fBsetpriv\\fR(1), \\fBswaks\\fR(1)"]
    return "\n".join(r) + "\n"


def main(argv: list[str]) -> int:
    page = manpage(cli._parser())
    if argv:
        Path(argv[0]).write_text(page, encoding="ascii")
    else:
        sys.stdout.write(page)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
