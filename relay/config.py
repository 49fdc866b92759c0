"""YAML -> a frozen, validated Config; every problem reported at once with key path and line."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from email_validator import EmailNotValidError, validate_email

from relay import fields
from relay.auth import load_users
from relay.configread import Reader
from relay.dkimsig import Signer
from relay.errors import ConfigError, Problem
from relay.model import Options, RouteMode, Secret
from relay.routes import Route, read_routes
from relay.yamlsrc import load as load_yaml

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
EX_CONFIG = 78  # sysexits.h: the exit code of `check` and `serve` for a bad config
DEFAULT_PROVIDER_HOST = "send.smscentre.com"
DEFAULT_PROVIDER_ADDRESS = "send@send.smscentre.com"
DEFAULT_SPOOL = Path("/var/lib/smsc-relay/spool.db")
_ENV_REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


@dataclass(frozen=True, slots=True)
class ListenConfig:
    host: str = "127.0.0.1"
    port: int = 2525
    networks: tuple[Network, ...] = (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    # Inbound mail may carry attachments we ignore (a printer's PDF): far above the provider's
    # 100 KB, which applies to the mail we send, not to the mail we receive.
    max_message_size: int = 2 * 1024 * 1024
    max_recipients: int = 50
    hostname: str = ""
    max_connections: int = 100  # more get 421 4.7.0 at connect (aiosmtpd has no cap of its own)
    idle_timeout: float = 300.0  # seconds a client may stay silent (RFC 5321 asks for >= 5 min)
    command_call_limit: int = 100  # then 421: a client looping on NOOP/HELP is cut off
    tls_cert: Path | None = None  # with tls_key: offer STARTTLS
    tls_key: Path | None = None
    require_tls: bool = False  # no MAIL before STARTTLS
    users: Mapping[str, str] = field(default_factory=dict)  # AUTH users (from auth.users_file)
    auth_required: bool = False  # even clients in `networks` must authenticate


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    password: Secret
    hosts: tuple[str, ...] = (DEFAULT_PROVIDER_HOST,)
    port: int = 25
    address: str = DEFAULT_PROVIDER_ADDRESS
    login: str = ""
    charset: str = "koi8-r"
    test: bool = True
    reply_address: str = ""
    outbox: Path | None = None
    email2sms_domain: str = DEFAULT_PROVIDER_HOST
    confirm_timeout: float = 900.0  # test=1: `sent` this long without a reply -> `unconfirmed`
    pause_interval: float = 3600.0  # errors 2/3 (login, funds) pause delivery this long, or until resumed
    block_backoff: float = 600.0  # error 4 (IP blocked for a while) holds the whole queue this long
    dkim: Signer | None = None  # sign provider mail
    verify_replies: bool = False  # apply a reply only if DKIM-signed by one of reply_dkim_domains
    reply_dkim_domains: tuple[str, ...] = ("smsc.ru", "smscentre.com")

    @property
    def test_flag(self) -> str:
        return "1" if self.test else "0"


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    concurrency: int = 2  # connections to the provider, each reused for many messages
    timeout: float = 60.0  # per SMTP command to the provider
    starttls: str = "auto"  # auto: when offered; require: never send in the clear; off
    min_backoff: float = 30.0
    max_backoff: float = 3600.0
    max_age: float = 86400.0  # then a message that still could not be sent expires
    shutdown_timeout: float = 20.0  # SIGTERM: in-flight sessions and sends get this long


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9465


@dataclass(frozen=True, slots=True)
class NotifyConfig:
    smarthost: str  # where notices to original senders are handed over (a local MTA)
    port: int = 25
    sender: str = ""  # the From: of notices; the envelope sender is always <>


@dataclass(frozen=True, slots=True)
class SpoolConfig:
    path: Path = DEFAULT_SPOOL
    keep_days: int = 30  # finished messages and provider replies are deleted after this


@dataclass(frozen=True, slots=True)
class ParsingConfig:
    undeclared_charset: str = "koi8-r"
    detect_utf8: bool = True
    strip_signature: bool = True
    strip_quotes: bool = True
    boilerplate: tuple[re.Pattern[str], ...] = ()


@dataclass(frozen=True, slots=True)
class Config:
    provider: ProviderConfig
    routes: tuple[Route, ...]
    listen: ListenConfig = ListenConfig()
    spool: SpoolConfig = SpoolConfig()
    parsing: ParsingConfig = ParsingConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    notify: NotifyConfig | None = None  # tell original senders of permanent failures
    metrics: MetricsConfig | None = None  # Prometheus /metrics and /health
    aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    source: str = "config"


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem("(file)", None, f"cannot read {path}: {exc}")], str(path)) from None
    return parse(text, base_dir=path.parent, env=os.environ if env is None else env, source=str(path))


def parse(
    text: str,
    *,
    base_dir: Path = Path("."),
    env: Mapping[str, str] | None = None,
    source: str = "config",
) -> Config:
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([Problem("(yaml)", None, str(exc).replace("\n", " "))], source) from None
    problems: list[Problem] = []
    top = Reader(problems, data, "", 1)
    listen = _listen(top.child("listen"), base_dir)
    provider = _provider(top.child("provider"), base_dir, env or {})
    spool = _spool(top.child("spool"), base_dir)
    parsing = _parsing(top.child("parsing"))
    delivery = _delivery(top.child("delivery"))
    notify = _notify(top.child("notify"))
    metrics = _metrics(top.child("metrics"))
    aliases = _aliases(top.child("aliases"))
    routes = read_routes(top, aliases, provider)
    top.finish()
    if problems:
        raise ConfigError(problems, source)
    return Config(provider, routes, listen, spool, parsing, delivery, notify, metrics, aliases, source)


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
        idle_timeout=float(r.integer("idle_timeout", int(d.idle_timeout), 1, 86400)),
        command_call_limit=r.integer("command_call_limit", d.command_call_limit, 1, 1_000_000),
        **_tls_and_auth(r, base_dir),
    )
    r.finish()
    return result


def _tls_and_auth(r: Reader, base_dir: Path) -> dict[str, Any]:
    tls = r.child("tls")
    cert, key = _path(tls, "cert", base_dir), _path(tls, "key", base_dir)
    if bool(cert) != bool(key):
        tls.problem(None, "give both cert and key")
    for name, path in (("cert", cert), ("key", key)):
        if path and not path.is_file():
            tls.problem(name, f"no such file: {path}")
    require_tls = tls.value("required", bool, False)
    if require_tls and not cert:
        tls.problem("required", "needs cert and key")
    tls.finish()
    auth = r.child("auth")
    users: dict[str, str] = {}
    users_file = _path(auth, "users_file", base_dir)
    if users_file:
        try:
            users = load_users(users_file)
        except (OSError, ValueError) as exc:
            auth.problem("users_file", f"{users_file}: {exc}")
        if not cert:
            auth.problem("users_file", "AUTH is offered only over TLS: set listen.tls.cert and key")
    required = auth.value("required", bool, False)
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
    listen = r.value("listen", str, "127.0.0.1:9465")
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
        port=r.integer("port", 25, 1, 65535),
        sender=r.checked("from", _address, ""),
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


def _provider(r: Reader, base_dir: Path, env: Mapping[str, str]) -> ProviderConfig:
    hosts = tuple(str(h) for h, _, _ in r.items("host")) or (DEFAULT_PROVIDER_HOST,)
    login = r.checked("login", lambda v: fields.login(_expand(v, env)), "")
    password = _password(r, base_dir, env)
    charset = r.value("charset", str, "koi8-r").lower()
    try:
        "test".encode(charset)
    except LookupError:
        r.problem("charset", f"unknown charset {charset!r}")
        charset = "koi8-r"
    reply_address = r.checked("reply_address", _address, "")
    address = r.checked("address", _address, DEFAULT_PROVIDER_ADDRESS)
    if not reply_address and not r.has("reply_address"):
        # The provider answers parameter errors even with test=0: without it they are lost.
        r.problem("reply_address", "is required: the provider's replies and error reports go there")
    result = ProviderConfig(
        password=password,
        hosts=hosts,
        port=r.integer("port", 25, 1, 65535),
        address=address,
        login=login,
        charset=charset,
        test=r.value("test", bool, True),
        reply_address=reply_address,
        outbox=_path(r, "outbox", base_dir),
        email2sms_domain=r.value("email2sms_domain", str, DEFAULT_PROVIDER_HOST),
        confirm_timeout=float(r.integer("confirm_timeout", 900, 10, 7 * 86400)),
        pause_interval=float(r.integer("pause_interval", 3600, 10, 7 * 86400)),
        block_backoff=float(r.integer("block_backoff", 600, 10, 86400)),
        dkim=_dkim(r.child("dkim"), base_dir),
        verify_replies=r.value("verify_replies", bool, False),
        reply_dkim_domains=tuple(str(d).lower() for d, _, _ in r.items("reply_dkim_domains"))
        or ("smsc.ru", "smscentre.com"),
    )
    r.finish()
    return result


def _dkim(r: Reader, base_dir: Path) -> Signer | None:
    if not r.data:
        return None
    domain = r.value("domain", str, "", required=True)
    selector = r.value("selector", str, "", required=True)
    key_file = _path(r, "key_file", base_dir)
    r.finish()
    if not key_file:
        r.problem("key_file", "is required (make one with `smsc-relay dkim-keygen`)")
        return None
    try:
        key = key_file.read_bytes()
    except OSError as exc:
        r.problem("key_file", f"cannot read {key_file}: {exc.strerror}")
        return None
    if b"PRIVATE KEY" not in key:
        r.problem("key_file", f"{key_file} is not a PEM private key")
        return None
    return Signer(domain, selector, key) if domain and selector else None


def _password(r: Reader, base_dir: Path, env: Mapping[str, str]) -> Secret:
    if r.has("password") and r.has("password_file"):
        r.problem("password", "give password or password_file, not both")
    raw = ""
    if r.has("password_file"):
        path = _path(r, "password_file", base_dir, env)
        try:
            raw = path.read_text(encoding="utf-8").strip() if path else ""
        except OSError as exc:
            r.problem("password_file", f"cannot read: {exc.__class__.__name__}: {exc.strerror}")
            return Secret("")
        except UnicodeDecodeError:
            r.problem("password_file", "cannot read: not UTF-8 text")
            return Secret("")
    elif r.has("password"):
        try:
            raw = _expand(str(r.raw("password")), env)
        except ValueError as exc:
            r.problem("password", str(exc))
            return Secret("")
    else:
        r.problem("password", "is required (or password_file, or password: ${SMSC_PASSWORD})")
        return Secret("")
    try:
        return Secret(fields.password(raw))
    except ValueError as exc:
        r.problem("password_file" if r.has("password_file") else "password", str(exc))
        return Secret("")


def _spool(r: Reader, base_dir: Path) -> SpoolConfig:
    result = SpoolConfig(_path(r, "path", base_dir) or DEFAULT_SPOOL, r.integer("keep_days", 30, 1, 3650))
    r.finish()
    return result


def _parsing(r: Reader) -> ParsingConfig:
    patterns = []
    for item, path, line in r.items("boilerplate"):
        try:
            patterns.append(re.compile(str(item), re.IGNORECASE | re.MULTILINE | re.DOTALL))
        except re.error as exc:
            problems_append(r, path, line, f"bad regular expression: {exc}")
    charset = r.value("undeclared_charset", str, "koi8-r").lower()
    try:
        b"test".decode(charset)
    except LookupError:
        r.problem("undeclared_charset", f"unknown charset {charset!r}")
        charset = "koi8-r"
    result = ParsingConfig(
        undeclared_charset=charset,
        detect_utf8=r.value("detect_utf8", bool, True),
        strip_signature=r.value("strip_signature", bool, True),
        strip_quotes=r.value("strip_quotes", bool, True),
        boilerplate=tuple(patterns),
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


def _path(r: Reader, key: str, base_dir: Path, env: Mapping[str, str] | None = None) -> Path | None:
    value = r.value(key, str, "")
    if not value:
        return None
    try:
        value = _expand(value, env or {})
    except ValueError as exc:
        r.problem(key, str(exc))
        return None
    path = Path(value).expanduser()
    # Relative paths are relative to the config file, so the daemon's working directory never matters.
    return path if path.is_absolute() else (base_dir / path).resolve()


def _address(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not a valid e-mail address: {exc}") from None


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Replace ${NAME} and ${NAME:-default} with environment values."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group("name"), m.group("default")
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ValueError(f"environment variable {name} is not set")

    return _ENV_REF.sub(sub, value)


def problems_append(r: Reader, path: str, line: int | None, message: str) -> None:
    r.problems.append(Problem(path, line, message))


__all__ = [
    "EX_CONFIG",
    "Config",
    "ListenConfig",
    "Options",
    "ProviderConfig",
    "Route",
    "RouteMode",
    "load",
    "parse",
]
