"""YAML -> a frozen, validated Config; every problem reported at once with key path and line.

The types and their defaults are relay/config/schema.py's; this module reads files (the config,
password_file, the users file, the DKIM key) and checks values, nothing else.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from relay import access, fields
from relay.config import values
from relay.config.provider import read_provider
from relay.config.reader import Reader
from relay.config.routes import read_routes
from relay.config.schema import (
    DEFAULT_SPOOL,
    MAX_API_CONCURRENCY,
    Config,
    DeliveryConfig,
    ListenConfig,
    MetricsConfig,
    NotifyConfig,
    ParsingConfig,
    ProviderConfig,
    Route,
    SpoolConfig,
    default,
)
from relay.config.summary_rules import read_summaries
from relay.config.users import load_users
from relay.config.yamlsrc import load as load_yaml
from relay.config.yamlsrc import syntax_problem
from relay.errors import ConfigError, Problem
from relay.model import RouteMode, Secret, SpoolBackend, TransportKind


def load(path: str | Path, env: Mapping[str, str] | None = None, *, secrets: bool = True) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem. `secrets`
    False: the provider password is not read (commands that only read the spool)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except PermissionError:
        why = access.explain(path, write=False) or "permission denied"
        raise ConfigError([Problem("(file)", None, f"cannot read {path}: {why}")], str(path)) from None
    except FileNotFoundError:
        raise ConfigError([Problem("(file)", None, f"cannot read {path}: no such file")], str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem("(file)", None, f"cannot read {path}: {exc}")], str(path)) from None
    env = os.environ if env is None else env
    return parse(text, base_dir=path.parent, env=env, source=str(path), secrets=secrets)


def parse(
    text: str,
    *,
    base_dir: Path = Path("."),
    env: Mapping[str, str] | None = None,
    source: str = "config",
    secrets: bool = True,
) -> Config:
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        line, message = syntax_problem(exc, text)
        raise ConfigError([Problem("(yaml)", line, message)], source) from None
    problems: list[Problem] = []
    top = Reader(problems, data, "", 1)
    listen = _listen(top.child("listen"), base_dir)
    provider = read_provider(top.child("provider"), base_dir, env or {}, secrets)
    spool = _spool(top.child("spool"), base_dir, env or {})
    parsing = _parsing(top.child("parsing"))
    delivery = _delivery(top.child("delivery"))
    notify = _notify(top.child("notify"))
    metrics = _metrics(top.child("metrics"))
    aliases = _aliases(top.child("aliases"))
    routes = read_routes(top, aliases, provider)
    rules = read_summaries(top)
    _api_checks(top, provider, delivery, routes)
    top.finish()
    if problems:
        raise ConfigError(problems, source)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return Config(
        provider, routes, listen, spool, parsing, delivery, notify, metrics, aliases, source, rules, digest
    )


def _listen(r: Reader, base_dir: Path) -> ListenConfig:
    d = ListenConfig()
    networks = []
    for item, path, line in r.items("networks") or [(str(n), "", None) for n in d.networks]:
        try:
            networks.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError as exc:
            problems_append(r, path, line, f"not a network: {exc}")
    result = ListenConfig(
        host=r.value("host", str, d.host),
        port=r.integer("port", d.port, 0, 65535),
        networks=tuple(networks),
        max_message_size=r.integer("max_message_size", d.max_message_size, 1024, 1 << 30),
        max_recipients=r.integer("max_recipients", d.max_recipients, 1, 1000),
        hostname=r.value("hostname", str, d.hostname),
        max_connections=r.integer("max_connections", d.max_connections, 1, 100_000),
        max_connections_per_address=r.integer(
            "max_connections_per_address", d.max_connections_per_address, 1, 100_000
        ),
        untrusted_connections=r.integer("untrusted_connections", d.untrusted_connections, 0, 100_000),
        untrusted_connections_per_address=r.integer(
            "untrusted_connections_per_address", d.untrusted_connections_per_address, 1, 100_000
        ),
        untrusted_mail_timeout=float(
            r.integer("untrusted_mail_timeout", int(d.untrusted_mail_timeout), 1, 3600)
        ),
        idle_timeout=float(r.integer("idle_timeout", int(d.idle_timeout), 1, 86400)),
        command_call_limit=r.integer("command_call_limit", d.command_call_limit, 1, 1_000_000),
        **_tls_and_auth(r, base_dir),
    )
    r.finish()
    return result


def _tls_and_auth(r: Reader, base_dir: Path) -> dict[str, Any]:
    tls = r.child("tls")
    cert, key = values.path(tls, "cert", base_dir), values.path(tls, "key", base_dir)
    if bool(cert) != bool(key):
        tls.problem(None, "give both cert and key")
    for name, path in (("cert", cert), ("key", key)):
        if path and not path.is_file():
            tls.problem(name, f"no such file: {path}")
    require_tls = tls.value("required", bool, default(ListenConfig, "require_tls"))
    if require_tls and not cert:
        tls.problem("required", "needs cert and key")
    tls.finish()
    auth = r.child("auth")
    users: dict[str, str] = {}
    users_file = values.path(auth, "users_file", base_dir)
    if users_file:
        try:
            users = load_users(users_file)
        except (OSError, ValueError) as exc:
            auth.problem("users_file", f"{users_file}: {exc}")
        if not cert:
            auth.problem("users_file", "AUTH is offered only over TLS: set listen.tls.cert and key")
    required = auth.value("required", bool, default(ListenConfig, "auth_required"))
    if required and not users_file:
        auth.problem("required", "needs users_file")
    auth.finish()
    return {
        "tls_cert": cert,
        "tls_key": key,
        "require_tls": require_tls,
        "users": users,
        "auth_required": required,
    }


def _metrics(r: Reader) -> MetricsConfig | None:
    if not r.data:
        return None
    d = MetricsConfig()
    listen = r.value("listen", str, f"{d.host}:{d.port}")
    r.finish()
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port (tests)
        r.problem("listen", f"{listen!r} is not host:port")
        return None
    return MetricsConfig(host.strip("[]"), int(port))


def _notify(r: Reader) -> NotifyConfig | None:
    if not r.data:
        return None
    result = NotifyConfig(
        smarthost=r.value("smarthost", str, "", required=True),
        port=r.integer("port", default(NotifyConfig, "port"), 1, 65535),
        sender=r.checked("from", values.address, default(NotifyConfig, "sender")),
        operator=r.checked("operator", values.address, default(NotifyConfig, "operator")),
    )
    r.finish()
    return result


def _delivery(r: Reader) -> DeliveryConfig:
    d = DeliveryConfig()
    result = DeliveryConfig(
        concurrency=r.integer("concurrency", d.concurrency, 1, 64),
        timeout=float(r.integer("timeout", int(d.timeout), 1, 3600)),
        starttls=r.choice("starttls", d.starttls, ("auto", "require", "off")),
        min_backoff=float(r.integer("min_backoff", int(d.min_backoff), 1, 86400)),
        max_backoff=float(r.integer("max_backoff", int(d.max_backoff), 1, 7 * 86400)),
        max_age=float(r.integer("max_age", int(d.max_age), 60, 30 * 86400)),
        shutdown_timeout=float(r.integer("shutdown_timeout", int(d.shutdown_timeout), 0, 3600)),
    )
    if result.min_backoff > result.max_backoff:
        r.problem("min_backoff", "must not exceed max_backoff")
    r.finish()
    return result


def _api_checks(
    top: Reader, provider: ProviderConfig, delivery: DeliveryConfig, routes: tuple[Route, ...]
) -> None:
    """What needs more than one section: the HTTP API's limits against delivery and routes."""
    http = provider.transport is TransportKind.HTTP
    over_http = provider.failover and not (
        provider.transport is TransportKind.SMPP and provider.smpp.failover_to is TransportKind.SMTP
    )
    if (http or over_http) and delivery.concurrency > MAX_API_CONCURRENCY:
        top.child("delivery").problem(
            "concurrency",
            f"at most {MAX_API_CONCURRENCY} with the HTTP API: the provider refuses 15 concurrent"
            " requests under one login (error 9), and tracking and the balance need two",
        )
    if provider.transport is not TransportKind.SMTP and provider.outbox is None:
        for route in routes:
            if route.mode is RouteMode.EMAIL2SMS:
                top.child("provider").problem(
                    "transport",
                    f"route {route.name} is email2sms, the provider's mail forwarding: it needs"
                    " transport: smtp (or make the route mode: command)",
                )


def _spool(r: Reader, base_dir: Path, env: Mapping[str, str]) -> SpoolConfig:
    keep_days = r.integer("keep_days", default(SpoolConfig, "keep_days"), 1, 3650)
    backend = SpoolBackend(r.choice("backend", "sqlite", tuple(b.value for b in SpoolBackend)))
    dsn, name, lease = Secret(""), "", default(SpoolConfig, "lease")
    outage_reply = default(SpoolConfig, "outage_reply")
    if backend is SpoolBackend.POSTGRESQL:
        lease = r.integer("lease", lease, 5, 3600)
        outage_reply = r.integer("outage_reply", outage_reply, 1, 60)
        if r.has("path"):
            r.problem("path", "is the SQLite file: with backend: postgresql, give dsn (or dsn_file)")
        dsn = values.secret(
            r, "dsn", base_dir, env, check=_dsn,
            missing="is required with backend: postgresql (or dsn_file, or dsn: ${SMSC_SPOOL_DSN})",
        )  # fmt: skip
        name = r.value("relay_name", str, "")
        if name and not RELAY_NAME.fullmatch(name):
            r.problem("relay_name", "letters, digits and .-_: only, at most 64 characters")
    else:
        for key in ("dsn", "dsn_file", "relay_name", "lease", "outage_reply"):
            if r.has(key):
                r.problem(key, "is for backend: postgresql")
    path = values.path(r, "path", base_dir) or DEFAULT_SPOOL
    keep_mail = r.integer("keep_mail", default(SpoolConfig, "keep_mail"), 0, 64 * 1024 * 1024)
    result = SpoolConfig(path, keep_days, backend, dsn, name, lease, keep_mail, outage_reply=outage_reply)
    r.finish()
    return result


RELAY_NAME = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def _dsn(text: str) -> str:
    """A libpq connection string or URI; the error never shows it (it may hold a password).
    psycopg (11 MiB of RSS with libpq) is imported here, by a config that has a DSN, only."""
    import psycopg
    from psycopg import conninfo

    try:
        conninfo.conninfo_to_dict(text)
    except psycopg.ProgrammingError:
        raise ValueError(
            "is not a PostgreSQL connection string (key=value ..., or postgresql://...)"
        ) from None
    return text


def _parsing(r: Reader) -> ParsingConfig:
    patterns = []
    for item, path, line in r.items("boilerplate"):
        try:
            patterns.append(re.compile(str(item), re.IGNORECASE | re.MULTILINE | re.DOTALL))
        except re.error as exc:
            problems_append(r, path, line, f"bad regular expression: {exc}")
    d = ParsingConfig()
    charset = r.value("undeclared_charset", str, d.undeclared_charset).lower()
    try:
        b"test".decode(charset)
    except LookupError:
        r.problem("undeclared_charset", f"unknown charset {charset!r}")
        charset = d.undeclared_charset
    result = ParsingConfig(
        undeclared_charset=charset,
        detect_utf8=r.value("detect_utf8", bool, d.detect_utf8),
        strip_signature=r.value("strip_signature", bool, d.strip_signature),
        strip_quotes=r.value("strip_quotes", bool, d.strip_quotes),
        boilerplate=tuple(patterns),
        # Above ~200 levels the stdlib parser itself runs out of stack.
        max_mime_depth=r.integer("max_mime_depth", d.max_mime_depth, 2, 200),
        max_mime_parts=r.integer("max_mime_parts", d.max_mime_parts, 2, 1_000_000),
    )
    r.finish()
    return result


def _aliases(r: Reader) -> dict[str, tuple[str, ...]]:
    result = {}
    for name in list(r.data):
        try:
            result[str(name)] = fields.phones([str(p) for p, _, _ in r.items(name)], groups=True)
        except ValueError as exc:
            r.problem(str(name), str(exc))
    return result


def problems_append(r: Reader, path: str, line: int | None, message: str) -> None:
    r.problems.append(Problem(path, line, message))
