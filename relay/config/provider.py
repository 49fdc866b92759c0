"""The `provider:` section: the provider's account, gateways, HTTP API, DKIM key and limits."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from relay import fields
from relay.config import values
from relay.config.reader import Reader
from relay.config.schema import (
    DEFAULT_API_URL,
    DEFAULT_CHARSET,
    DEFAULT_PROVIDER_ADDRESS,
    DEFAULT_PROVIDER_HOST,
    REPLY_DKIM_DOMAINS,
    DkimKey,
    ProviderConfig,
    SmppConfig,
    default,
)
from relay.model import TransportKind


def read_provider(r: Reader, base_dir: Path, env: Mapping[str, str], secrets: bool = True) -> ProviderConfig:
    hosts = tuple(str(h) for h, _, _ in r.items("host")) or (DEFAULT_PROVIDER_HOST,)
    login = r.checked("login", lambda v: fields.login(values.expand(v, env)), "")
    password = values.password(r, base_dir, env) if secrets else values.skip_password(r)
    charset = r.value("charset", str, DEFAULT_CHARSET).lower()
    try:
        "test".encode(charset)
    except LookupError:
        r.problem("charset", f"unknown charset {charset!r}")
        charset = DEFAULT_CHARSET
    reply_address = r.checked("reply_address", values.ascii_address, "")
    address = r.checked("address", values.ascii_address, DEFAULT_PROVIDER_ADDRESS)
    if not reply_address and not r.has("reply_address"):
        # The provider answers parameter errors even with test=0: without it they are lost.
        r.problem("reply_address", "is required: the provider's replies and error reports go there")

    def d(name: str) -> Any:
        return default(ProviderConfig, name)

    result = ProviderConfig(
        password=password,
        hosts=hosts,
        port=r.integer("port", d("port"), 1, 65535),
        address=address,
        login=login,
        charset=charset,
        test=r.value("test", bool, d("test")),
        reply_address=reply_address,
        outbox=values.path(r, "outbox", base_dir),
        email2sms_domain=r.value("email2sms_domain", str, d("email2sms_domain")),
        confirm_timeout=float(r.integer("confirm_timeout", int(d("confirm_timeout")), 10, 7 * 86400)),
        pause_interval=float(r.integer("pause_interval", int(d("pause_interval")), 10, 7 * 86400)),
        block_backoff=float(r.integer("block_backoff", int(d("block_backoff")), 10, 86400)),
        dkim=_dkim(r.child("dkim"), base_dir),
        verify_replies=r.value("verify_replies", bool, d("verify_replies")),
        phone_limits=r.value("phone_limits", bool, d("phone_limits")),
        reply_tags=r.value("reply_tags", bool, d("reply_tags")),
        reply_dkim_domains=tuple(str(x).lower() for x, _, _ in r.items("reply_dkim_domains"))
        or REPLY_DKIM_DOMAINS,
        reply_rate_limit=r.integer("reply_rate_limit", d("reply_rate_limit"), 0, 100_000),
        transport=TransportKind(r.choice("transport", d("transport").value, ("smtp", "http", "smpp"))),
        api_urls=_api_urls(r),
        failover=r.value("failover", bool, d("failover")),
        track_delivery=r.value("track_delivery", bool, d("track_delivery")),
        track_timeout=float(r.integer("track_timeout", int(d("track_timeout")), 600, 30 * 86400)),
        low_balance=_amount(r, "low_balance", d("low_balance")),
        smpp=_smpp(r.child("smpp")),
    )
    if result.failover and result.transport is TransportKind.HTTP:
        r.problem("failover", "is for transport: smtp or smpp (HTTP is then the way around them)")
    if result.transport is TransportKind.SMPP:
        _smpp_account(r, login, password.value if result.outbox is None and secrets else None)
    elif r.has("smpp"):
        r.problem("smpp", "is read only with transport: smpp")
    r.finish()
    return result


def _api_urls(r: Reader) -> tuple[str, ...]:
    """api_url then api_mirrors: https (the password is in every request), or http to a
    loopback address only (a local proxy, a test)."""
    urls = [r.value("api_url", str, DEFAULT_API_URL)] + [str(u) for u, _, _ in r.items("api_mirrors")]
    result = []
    for key, url in zip(["api_url"] + ["api_mirrors"] * (len(urls) - 1), urls, strict=True):
        try:
            result.append(values.api_url(url))
        except ValueError as exc:
            r.problem(key, str(exc))
    return tuple(dict.fromkeys(result)) or (DEFAULT_API_URL,)


def _amount(r: Reader, key: str, fallback: float) -> float:
    value = r.raw(key)
    if value is None:
        return fallback
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        r.problem(key, f"expected an amount of money >= 0, got {value!r}")
        return fallback
    return float(value)


def _dkim(r: Reader, base_dir: Path) -> DkimKey | None:
    if not r.data:
        return None
    domain = r.value("domain", str, "", required=True)
    selector = r.value("selector", str, "", required=True)
    key_file = values.path(r, "key_file", base_dir)
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
    return DkimKey(domain, selector, key) if domain and selector else None


def _smpp(r: Reader) -> SmppConfig:
    """provider.smpp: each key defaults to the provider's connection page's value."""
    if not r.data:  # none given, or not a mapping (the reader has said so)
        return SmppConfig()

    def d(name: str) -> Any:
        return default(SmppConfig, name)

    tls = r.value("tls", bool, d("tls"))
    enquire = r.integer("enquire_link", int(d("enquire_link")), 1, 110)
    if enquire < 30:
        r.problem("enquire_link", f"{enquire} is below 30: the SMPP library sends enquire_link every 30 s"
                  " and cannot be set to send more often")  # fmt: skip
        enquire = int(d("enquire_link"))
    result = SmppConfig(
        host=r.checked("host", values.hostname, d("host")),
        port=r.integer("port", 3443 if tls else d("port"), 1, 65535),
        tls=tls,
        backup_host=r.checked("backup_host", lambda v: v and values.hostname(v), d("backup_host")),
        system_type=r.checked("system_type", _system_type, d("system_type")),
        sessions=r.integer("sessions", d("sessions"), 1, 8),
        window=r.integer("window", d("window"), 1, 300),
        enquire_link=float(enquire),
        bind_timeout=float(r.integer("bind_timeout", int(d("bind_timeout")), 1, 120)),
        source_ton=r.integer("source_ton", d("source_ton"), 0, 6),
        source_npi=r.integer("source_npi", d("source_npi"), 0, 18),
        dest_ton=r.integer("dest_ton", d("dest_ton"), 0, 6),
        dest_npi=r.integer("dest_npi", d("dest_npi"), 0, 18),
        validity=r.integer("validity", d("validity"), 1, 1440),
        receipt_wait=float(r.integer("receipt_wait", int(d("receipt_wait")), 60, 86400)),
        failover_to=TransportKind(r.choice("failover_to", d("failover_to").value, ("http", "smtp"))),
    )
    r.finish()
    return result


def _system_type(value: str) -> str:
    """At most 12 printable ASCII characters (SMPP 3.4: a 13-octet C-string)."""
    if len(value) > 12 or not (value.isascii() and value.isprintable()):
        raise ValueError(f"expected up to 12 printable ASCII characters, got {value!r}")
    return value


def _smpp_account(r: Reader, login: str, password: str | None) -> None:
    """SMPP 3.4's bind fields (5.2: C-octet strings of 16 and 9 octets with their NUL), and the
    provider's rule for the password (`None`: not read, a dry run or `check` without secrets)."""
    if not login:
        r.problem("login", "is required with transport: smpp (the SMPP system_id is the login)")
    elif len(login) > 15:
        r.problem("login", f"is {len(login)} characters; an SMPP system_id holds 15 at most")
    if password is None:
        return
    if not password.isascii():
        r.problem("password", "must be Latin letters, digits and signs for SMPP (the provider's rule)")
    elif len(password) > 8:
        r.problem(
            "password",
            f"is {len(password)} characters; an SMPP bind takes 8 at most (SMPP 3.4):"
            " create an API password of up to 8 in the provider's account settings",
        )
