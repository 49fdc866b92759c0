"""aiosmtpd's SMTP protocol without its per-connection introspection (LeanSMTP).

For every connection, aiosmtpd 1.4's ``SMTP.__init__`` rebuilds the tables of its own ``smtp_*``
and ``auth_*`` methods and of the handler's ``handle_*`` hooks with ``inspect.getmembers()`` and
``dir()``, inspects the EHLO hook's signature and formats a log line of AUTH mechanisms, and
``_getaddr`` creates a ``typing.Protocol`` class on every MAIL and RCPT. Under load that was ~17% of
the relay's event-loop time (py-spy, docs/benchmarks.md), and the event loop is what limits
accept throughput. The tables depend only on the classes and the handler, so ``LeanSMTP``
computes them once and binds them per connection.

``tests/test_smtpsession.py`` checks that a ``LeanSMTP`` is, attribute for attribute, what
aiosmtpd's own ``__init__`` makes, so an aiosmtpd release that changes its ``__init__`` fails the
tests rather than misbehaving in production (pyproject pins aiosmtpd below 1.5 for this reason).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import ssl
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any

from aiosmtpd.smtp import (
    CALL_LIMIT_DEFAULT,
    SMTP,
    AuthenticatorType,
    _AuthMechAttr,
    login_always_fail,
)

log = logging.getLogger("relay.listener")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ANGLE_ADDR = re.compile(
    rf"<(?P<addr>{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>[ \t]*(?P<rest>.*)\Z", re.DOTALL
)


@dataclass(frozen=True, slots=True)
class _HandlerTables:
    hooks: dict[str, Callable[..., Any]]
    ehlo_hook_ver: str | None
    auth: tuple[tuple[str, Callable[..., Any]], ...]  # the handler's auth_* methods by mechanism


_handler_tables: weakref.WeakKeyDictionary[Any, _HandlerTables] = weakref.WeakKeyDictionary()
_class_tables: dict[type, tuple[tuple[str, ...], tuple[tuple[str, str], ...]]] = {}


def _mechanism(name: str, func: Any) -> str:
    return str(getattr(func, "__auth_mechanism_name__", name.replace("auth_", "").replace("__", "-")))


def _tables_of_handler(handler: Any) -> _HandlerTables:
    tables = _handler_tables.get(handler)
    if tables is None:
        names = [m for m in dir(handler) if m.startswith("handle_")]
        hooks = {m.replace("handle_", ""): getattr(handler, m) for m in names}
        ehlo = hooks.get("EHLO")
        version = None
        if ehlo is not None:
            count = len(inspect.signature(ehlo).parameters)
            if count != 5:  # aiosmtpd still takes a deprecated 4-argument form; we never write one
                raise RuntimeError(f"unsupported handle_EHLO hook with {count} parameters")
            version = "new"
        members = inspect.getmembers(handler)
        auth = tuple((_mechanism(name, func), func) for name, func in members if name.startswith("auth_"))
        tables = _HandlerTables(hooks, version, auth)
        _handler_tables[handler] = tables
    return tables


def _tables_of_class(cls: type) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(smtp_* method names, (mechanism, auth_* method name) pairs) of a protocol class."""
    tables = _class_tables.get(cls)
    if tables is None:
        smtp = tuple(m for m in dir(cls) if m.startswith("smtp_"))
        members = inspect.getmembers(cls)
        auth = tuple((_mechanism(name, func), name) for name, func in members if name.startswith("auth_"))
        tables = _class_tables[cls] = (smtp, auth)
    return tables


class LeanSMTP(SMTP):
    """``aiosmtpd.smtp.SMTP`` with the same state, built from cached tables.

    Takes the keyword arguments the relay uses; the others keep aiosmtpd's defaults.
    """

    def __init__(
        self,
        handler: Any,
        *,
        data_size_limit: int | None,
        enable_SMTPUTF8: bool,
        decode_data: bool,
        hostname: str,
        ident: str,
        tls_context: ssl.SSLContext | None,
        require_starttls: bool,
        timeout: float,
        auth_require_tls: bool,
        authenticator: AuthenticatorType | None,
        command_call_limit: dict[str, int],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not auth_require_tls:
            raise ValueError("LeanSMTP never offers AUTH without TLS")
        self.__ident__ = ident
        self.loop = loop or asyncio.get_running_loop()
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(loop=self.loop, limit=self.line_length_limit),
            client_connected_cb=self._cb_client_connected,
            loop=self.loop,
        )
        self.event_handler = handler
        self.data_size_limit = data_size_limit
        self.enable_SMTPUTF8 = enable_SMTPUTF8
        self._decode_data = decode_data
        self.command_size_limits.clear()
        self.hostname = hostname
        self.tls_context = tls_context
        self.require_starttls = tls_context and require_starttls
        self._timeout_duration = timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None
        self.envelope = None
        self.transport = None
        self._handler_coroutine = None
        self._auth_require_tls = auth_require_tls
        self._proxy_timeout = None
        if authenticator is not None:
            self._authenticator = authenticator
            self._auth_callback = None
        else:
            self._auth_callback = login_always_fail
            self._authenticator = None
        self._auth_required = False

        smtp_names, own_auth = _tables_of_class(type(self))
        handler_tables = _tables_of_handler(handler)
        # Same precedence as aiosmtpd: the handler's auth_* methods override the built-in ones.
        self._auth_methods = {mech: _AuthMechAttr(getattr(self, name), True) for mech, name in own_auth}
        self._auth_methods.update((mech, _AuthMechAttr(func, False)) for mech, func in handler_tables.auth)
        self._handle_hooks = dict(handler_tables.hooks)
        self._ehlo_hook_ver = handler_tables.ehlo_hook_ver
        self._smtp_methods = {m.replace("smtp_", ""): getattr(self, m) for m in smtp_names}

        self._enforce_call_limit = True
        self._call_limit_base = command_call_limit
        self._call_limit_default = command_call_limit.get("*", CALL_LIMIT_DEFAULT)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's ``_getaddr`` without the ``typing.Protocol`` class it creates per call, and
        with "553 malformed address" instead of a crash (451) where the stdlib parser raises
        on malformed input such as ``MAIL FROM:<`` or ``RCPT TO:1@[``."""
        if not arg:
            return "", ""
        # Nearly every MAIL and RCPT is a plain <dot-atom@domain>: 0.6 us here against 30 us in
        # the stdlib's parser (two per mail, ~10% of the event loop). Anything else, and a
        # comment after the address, goes to the parser (tests/test_smtpsession.py holds both
        # to aiosmtpd's answers).
        plain = _PLAIN_ANGLE_ADDR.match(arg)
        if plain is not None and not plain["rest"].startswith("("):
            simple: str = plain["addr"]
            if self.local_part_limit and len(simple.rpartition("@")[0]) > self.local_part_limit:
                return None, None
            return simple, plain["rest"]
        address: Any  # AngleAddr or AddrSpec: both have addr_spec
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
            addr: str = address.addr_spec
        except (HeaderParseError, IndexError, AttributeError):
            # The stdlib parser also raises IndexError/AttributeError on some malformed input
            # (`<`, `"`, `1@[`): for the client it is the same malformed address.
            return None, None
        localpart = addr.rpartition("@")[0]
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        if not addr.isprintable():  # NUL and other controls: no mail system means them
            return None, None
        return addr, rest
