"""`smsc-relay check [--online]`: the config is valid; --online: every way out and the spool answer.

--online sends nothing: SMTP is connect, EHLO, STARTTLS, QUIT through delivery's own session
opening; HTTP is balance.php through delivery's API client; the spool is a connection and a
read. Each probe prints one line, OK or what is wrong and what to do; secrets never. SMPP is not
probed (a bind is the daemon's: /health says whether its sessions are bound).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import ipaddress
import math
import os
import pwd
import re
import socket
import sys
from dataclasses import dataclass
from typing import Any

from relay import access
from relay.config.load import load
from relay.config.placeholders import placeholders
from relay.config.schema import Config, ProviderConfig
from relay.errors import DeliveryError, Exit
from relay.model import SpoolBackend, TransportKind
from relay.provider_errors import rule

EXAMPLES = """examples:
  smsc-relay check -c /etc/smsc-relay/relay.yaml
  smsc-relay check --online                  # connect to the provider and the spool; sends nothing
  sudo -u smsc-relay smsc-relay check --online --timeout 3   # as the relay's own user

--online, one line per probe, after the offline check (a broken config exits 78 first):
  provider SMTP HOST:PORT   each provider.host: connect, EHLO, STARTTLS (delivery.starttls), QUIT
  provider API URL          api_url and each mirror, when the relay uses the API (transport http,
                            failover, track_delivery, low_balance): balance.php with the login
  spool                     PostgreSQL: connect, SELECT 1, schema version; SQLite: writable?
  provider SMPP             not probed (no bind): the running relay's /health says whether its
                            sessions are bound
  Over SMTP the login and password travel in each mail: only a sent one tests them (send-test).
  A dry run (provider.outbox) is probed all the same, for the day it goes live.

exit status:
  0   the config is valid (with --online: and every probe is OK)
  78  the config is broken, or the provider or the database refuses the login or password
  77  the SQLite spool is not writable by this user
  75  a way out or the spool database cannot be reached (refused, timeout, DNS, TLS)
  Probes failing in different ways: the first of 78, 77, 75."""
SEVERITY = (Exit.CONFIG, Exit.NOPERM, Exit.TEMPFAIL)  # the exit code when probes fail differently
# Past --timeout, the probe's own bound: the libraries' timeouts (per step) come first, since they
# name the step and close their sockets; this one only caps a probe that keeps answering slowly.
GRACE = 1.0


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("check", parents=[common], help="validate the config (--online: and connect)",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--online", action="store_true", help="also connect to the provider and the spool")
    p.add_argument("--timeout", type=_seconds, default=10.0, metavar="SECONDS",
                   help="--online: each probe gives up after this long (default 10)")  # fmt: skip
    p.set_defaults(func=cmd_check)


def _seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError(f"{text}: seconds from 0 to 600")
    return value


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load(args.config)
    p = cfg.provider
    extras = [_way(p)] + (["delivery tracking"] if p.track_delivery else [])
    print(
        f"{args.config}: OK ({len(cfg.routes)} route(s); {'; '.join(extras)}"
        f"{'; dry-run outbox ' + str(p.outbox) if p.outbox else ''})"
    )
    if p.transport is TransportKind.SMPP:
        print(_smpp_line(p))
        # Warned even in a dry run: it is the live config's password that would go in the clear.
        clear = [host for host, _ in p.smpp.hosts if not _loopback(host)] if not p.smpp.tls else []
        if clear:
            print(
                f"warning: provider.smpp.tls: false with {', '.join(clear)}: the bind's password crosses"
                " the network in the clear; tls: true uses the provider's port 3443",
                file=sys.stderr,
            )
    found = placeholders(cfg)
    if found and cfg.provider.outbox is not None:
        print(
            f"note: {len(found)} example value(s) left; fine for a dry run, not for going live",
            file=sys.stderr,
        )
    elif found:
        for warning in found:
            print(f"warning: {warning}", file=sys.stderr)
        print(
            f"warning: {len(found)} example value(s) in a live config (no provider.outbox)", file=sys.stderr
        )
    if not getattr(args, "online", False):
        return Exit.OK
    if p.outbox is not None:
        print(f"note: dry run (provider.outbox {p.outbox}): it needs no way out; probed all the same")
    if p.transport is TransportKind.SMPP:
        smtp = (
            ", and the SMTP failover gateway is not either" if _failover_to(p) is TransportKind.SMTP else ""
        )
        print(
            f"note: provider SMPP {', '.join(f'{h}:{port}' for h, port in p.smpp.hosts)}: not probed"
            f" (check makes no bind){smtp}; the running relay's /health and smsc_relay_smpp_sessions_bound"
            " say whether its sessions are bound"
        )
    probes = asyncio.run(online(cfg, args.timeout))
    secrets = [s for s in (p.password.value, _dsn_password(cfg.spool.dsn.value)) if s]
    for probe in probes:
        print(_scrub(probe.line(), secrets))
    failed = {probe.code for probe in probes if not probe.ok}
    return next((code for code in SEVERITY if code in failed), Exit.OK)


def _failover_to(p: ProviderConfig) -> TransportKind | None:
    """Where provider.failover sends mail: HTTP, or smpp.failover_to with SMPP; None: no failover."""
    if not p.failover:
        return None
    return p.smpp.failover_to if p.transport is TransportKind.SMPP else TransportKind.HTTP


def _way(p: ProviderConfig) -> str:
    """How requests leave, for the OK line: the transport's first host or URLs, and the failover."""
    if p.transport is TransportKind.HTTP:
        return f"provider API {', '.join(p.api_urls)}"
    if p.transport is TransportKind.SMPP:
        way = f"provider SMPP {p.smpp.host}:{p.smpp.port}"
    else:
        way = f"provider {', '.join(p.hosts)}"
    target = _failover_to(p)
    if target is TransportKind.SMTP:
        return f"{way}, failover to SMTP {', '.join(p.hosts)}"
    return way + (f", failover to {p.api_urls[0]}" if target is TransportKind.HTTP else "")


def _smpp_line(p: ProviderConfig) -> str:
    s = p.smpp
    backup = f"backup {s.backup_host}:{s.port}" if s.backup_host else "no backup"
    return (
        f"SMPP: binds {s.host}:{s.port} ({backup}), tls {'on' if s.tls else 'off'},"
        f" {s.sessions} transceiver session(s) of window {s.window}"
    )


def _loopback(host: str) -> bool:
    """Whether a host is this machine: what goes there in the clear never crosses a network."""
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class Probe:
    label: str  # what was probed: "provider SMTP host:port"
    ok: bool
    detail: str  # OK: what was seen; else what is wrong
    hint: str = ""  # what to do about it
    code: Exit = Exit.OK  # the exit code it asks for when it failed

    def line(self) -> str:
        if self.ok:
            return f"{self.label}: OK ({self.detail})"
        return f"{self.label}: FAILED: {self.detail}" + (f" — {self.hint}" if self.hint else "")


async def online(cfg: Config, timeout: float) -> list[Probe]:
    """Every probe the config asks for, at once (so the whole check takes about one timeout)."""
    p = cfg.provider
    jobs = []
    if p.transport is TransportKind.SMTP:
        hostname = cfg.listen.hostname or await asyncio.to_thread(socket.getfqdn)  # delivery's EHLO name
        jobs += [_smtp(cfg, host, hostname, timeout) for host in p.hosts]
    over_http = _failover_to(p) is TransportKind.HTTP
    if p.uses_api:
        why = [] if p.transport is TransportKind.HTTP else [
            name for name, used in (("failover", over_http), ("delivery tracking", p.track_delivery),
                                    ("low_balance", p.low_balance > 0)) if used
        ]  # fmt: skip
        jobs += [_api(cfg, url, timeout, f" (for {', '.join(why)})" if why else "") for url in p.api_urls]
    jobs.append(_postgres(cfg, timeout) if cfg.spool.backend is SpoolBackend.POSTGRESQL else _sqlite(cfg))
    return list(await asyncio.gather(*jobs))


async def _smtp(cfg: Config, host: str, hostname: str, timeout: float) -> Probe:
    import aiosmtplib

    from relay.delivery.smtp import SmtpTransport

    p, starttls = cfg.provider, cfg.delivery.starttls
    label = f"provider SMTP {host}:{p.port}"
    # The transport delivery uses, on this one host: its connect, EHLO and STARTTLS are the probe.
    transport = SmtpTransport((host,), p.port, timeout=timeout, starttls=starttls, local_hostname=hostname)
    try:
        async with asyncio.timeout(timeout + GRACE):
            smtp = await transport._connect()
    except (DeliveryError, TimeoutError) as exc:
        text = exc.text.removeprefix(f"{host}:{p.port}: ") if isinstance(exc, DeliveryError) else ""
        return _failed(label, text, timeout, "provider.host and provider.port", "provider.host")
    tls = smtp.get_transport_info("sslcontext") is not None
    with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
        async with asyncio.timeout(timeout + GRACE):
            await smtp.quit()
    smtp.close()
    if tls:
        return Probe(label, True, "EHLO, STARTTLS")
    if starttls == "off":
        return Probe(label, True, "EHLO; STARTTLS not tried: delivery.starttls is off")
    return Probe(label, True, "EHLO; STARTTLS not offered: mail goes in the clear")


async def _api(cfg: Config, url: str, timeout: float, why: str) -> Probe:
    from relay.delivery.http import ApiClient
    from relay.parsers.api import StatusError

    label = f"provider API {url}{why}"
    one = dataclasses.replace(cfg.provider, api_urls=(url,))  # each URL its own line
    client = ApiClient(lambda: one, lambda: timeout, connections=1)
    try:
        async with asyncio.timeout(timeout + GRACE):
            balance = await client.balance()
    except StatusError as exc:
        if exc.code == 2:
            what = "login or password" if cfg.provider.login else "API key (provider.login is empty)"
            return Probe(label, False, f"ERROR 2 ({exc.description})",
                         f"the provider refuses the {what}: check provider.login and provider.password_file"
                         " (or password), and the account's allowed IP addresses", Exit.CONFIG)  # fmt: skip
        return Probe(label, False, f"ERROR {exc.code} ({exc.description}): {rule(exc.code).meaning}",
                     "see the provider's account page", Exit.TEMPFAIL)  # fmt: skip
    except (DeliveryError, TimeoutError) as exc:
        text = exc.text.removeprefix(f"{url}: ") if isinstance(exc, DeliveryError) else ""
        if "balance.php:" in text:  # it answered, but not as the provider does
            hint = "is provider.api_url the provider's API (https://smsc.ru/sys/)?"
            return Probe(label, False, f"not the provider's answer ({text})", hint, Exit.TEMPFAIL)
        return _failed(label, text, timeout, "provider.api_url / api_mirrors")
    finally:
        await client.close()
    return Probe(label, True, f"balance {balance}")


async def _postgres(cfg: Config, timeout: float) -> Probe:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    from relay.spool.admin import POSTGRES_SCHEMA_VERSION as VERSION
    from relay.spool.admin import masked_dsn as masked

    dsn = cfg.spool.dsn.value
    c = conninfo_to_dict(dsn)  # the config loader parsed it already
    label = f"spool PostgreSQL {c.get('host') or c.get('hostaddr') or 'local socket'}:{c.get('port') or 5432}"
    label += f"/{c.get('dbname') or c.get('user') or '(user name)'}"
    seconds = max(2, math.ceil(timeout))  # libpq's own bound: whole seconds, at least 2
    try:
        async with asyncio.timeout(seconds + GRACE):
            conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=seconds, autocommit=True)
            async with conn:
                await conn.execute("SELECT 1")
                cur = await conn.execute("SELECT to_regclass('schema_version') IS NOT NULL")
                row = await cur.fetchone()
                found = None
                if row and row[0]:
                    cur = await conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
                    row = await cur.fetchone()
                    found = int(row[0]) if row else 0
    except psycopg.Error as exc:
        # libpq's first line says what failed; the next ones are its own hint, ours replaces them.
        text = masked(" ".join(str(exc).strip().splitlines()[0].split()), dsn)
        refused = re.search(r"password authentication failed|role .* does not exist|database .* does not"
                            r" exist|no pg_hba\.conf entry|authentication", text)  # fmt: skip
        if refused:
            hint = "check user, password and dbname in spool.dsn (docs/ha.md makes them)"
            return Probe(label, False, text, f"the server refuses them: {hint}", Exit.CONFIG)
        return _failed(label, text, timeout, "spool.dsn")
    except TimeoutError:
        return _failed(label, "", timeout, "spool.dsn")
    if found is None:
        return Probe(label, True, "SELECT 1; no schema yet: the first relay to start creates it")
    if found > VERSION:
        return Probe(label, False, f"schema version {found} is newer than this relay's ({VERSION})",
                     "upgrade smsc-relay: a newer relay has used this database", Exit.TEMPFAIL)  # fmt: skip
    later = f"; this relay brings it to {VERSION} when it starts" if found < VERSION else ""
    return Probe(label, True, f"SELECT 1; schema version {found}{later}")


async def _sqlite(cfg: Config) -> Probe:
    path = cfg.spool.path
    label = f"spool SQLite {path}"
    why = access.explain(path)
    if why:
        return Probe(label, False, why, "", Exit.NOPERM)
    try:
        me = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        me = f"uid {os.geteuid()}"
    detail = f"writable by {me}" if path.exists() else f"not made yet; {path.parent} is writable by {me}"
    if os.geteuid() == 0:  # root may write anything: the relay's user may not
        detail += "; the relay runs as its own user: run this check as that user"
    return Probe(label, True, detail)


# What a failure's text says (aiosmtplib's, httpx's, libpq's words), first match wins.
CAUSES = (
    ("cert", r"CERTIFICATE_VERIFY_FAILED|certificate verify failed|hostname mismatch"),
    ("starttls", r"does not offer STARTTLS"),
    ("tls", r"\bSSL\b|\bTLS\b|handshake"),
    ("refused", r"Errno 111\b|[Cc]onnection refused|Connect call failed"),
    ("connect", r"All connection attempts failed"),  # httpx: refused or unreachable, it does not say
    ("timeout", r"(?i)timed out|timeout expired"),
    ("dns", r"not known|name resolution|nodename nor servname|could not translate host|Errno -[235]\b"),
    ("unreachable", r"No route to host|Network is unreachable|Errno 11[03]\b|Errno 101\b"),
    ("socket", r"No such file or directory"),
    ("reply", r"^[45]\d\d\b"),
)
# Each kind: (what is wrong, what to do); {where} is the config key, {short} the reason inside.
SAYS = {
    "refused": ("connection refused", "is the host/port in {where} right, and may this machine reach it"
                " (firewall)?"),
    "connect": ("cannot connect (refused or unreachable)", "is the host/port in {where} right, and may this"
                " machine reach it (firewall)?"),
    "timeout": ("timed out after {timeout:g} s", "nothing answered: a firewall dropping packets, or a wrong"
                " host in {where}?"),
    "dns": ("the host name does not resolve", "check the host name in {host} and this machine's DNS"),
    "unreachable": ("no route to the host", "check {where}, this machine's network and the firewall"),
    "cert": ("TLS certificate not trusted ({short})", "the server's certificate does not verify against this"
             " machine's CAs: is the host name the one on the certificate? a private CA goes into the system"
             " store (or SSL_CERT_FILE)"),
    "tls": ("TLS failed ({short})", "the server and this machine share no TLS version or cipher, or something"
            " in between breaks TLS"),
    "starttls": ("the server offers no STARTTLS and delivery.starttls is require", "ask the provider, or set"
                 " delivery.starttls: auto if mail in the clear is acceptable there"),
    "socket": ("no server listens at that socket", "is the server running, and are host and port in {where}"
               " right?"),
    "reply": ("the server refused the session: {text}", "it takes no sessions from this machine: ask the"
              " provider"),
    "": ("{text}", "check {where} and the network"),
}  # fmt: skip


def cause(text: str) -> str:
    """The kind of failure a text describes; "" when no pattern knows it."""
    return next((kind for kind, pattern in CAUSES if re.search(pattern, text)), "")


def _failed(label: str, text: str, timeout: float, where: str, host: str = "") -> Probe:
    """A probe that could not reach its server: what happened, and what the operator can do.
    No text: the probe's own time bound ran out. `where`: the config keys; `host`: the name's."""
    what, hint = SAYS[cause(text) if text else "timeout"]
    values = {"where": where, "host": host or where, "timeout": timeout, "text": text, "short": _short(text)}
    return Probe(label, False, what.format(**values), hint.format(**values), Exit.TEMPFAIL)


def _short(text: str) -> str:
    """The reason inside a wrapped error text: OpenSSL's words, else the last clause."""
    m = re.search(r"certificate verify failed: [^(]*|\[SSL: [A-Z_]+\][^(]*", text)
    return (m.group(0) if m else text.split(": ")[-1]).strip().rstrip(".")


def _dsn_password(dsn: str) -> str:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        return str(conninfo_to_dict(dsn).get("password") or "") if dsn else ""
    except psycopg.ProgrammingError:
        return ""


def _scrub(line: str, secrets: list[str]) -> str:
    """No password or API key in any line, whatever a library's text held."""
    for secret in secrets:
        line = line.replace(secret, "***")
    return line
