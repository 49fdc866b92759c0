"""Config values that come from outside the YAML or need more than a type check: paths
(relative to the config file), ${ENV} references, the provider password and addresses."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from email_validator import EmailNotValidError, validate_email

from relay import access, fields
from relay.config.reader import Reader
from relay.model import Secret

_ENV_REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def skip_password(r: Reader) -> Secret:
    """The password keys, marked read but not read: a command that needs no secret."""
    r.raw("password")
    r.raw("password_file")
    return Secret("")


def password(r: Reader, base_dir: Path, env: Mapping[str, str]) -> Secret:
    return secret(
        r, "password", base_dir, env, check=fields.password,
        missing="is required (or password_file, or password: ${SMSC_PASSWORD})",
    )  # fmt: skip


def secret(
    r: Reader,
    key: str,
    base_dir: Path,
    env: Mapping[str, str],
    *,
    check: Callable[[str], str],
    missing: str,
) -> Secret:
    """A secret given as `key` (the text, or ${ENV}) or `key`_file (a file holding it), checked
    by `check` (which raises ValueError); `missing`: the problem when neither is given."""
    file_key = f"{key}_file"
    if r.has(key) and r.has(file_key):
        r.problem(key, f"give {key} or {file_key}, not both")
    raw = ""
    if r.has(file_key):
        file = path(r, file_key, base_dir, env)
        try:
            raw = file.read_text(encoding="utf-8").strip() if file else ""
        except PermissionError as exc:
            why = access.explain(file, write=False) if file else ""
            r.problem(file_key, f"cannot read {file}: {why or exc.strerror}")
            return Secret("")
        except OSError as exc:
            r.problem(file_key, f"cannot read {file}: {exc.__class__.__name__}: {exc.strerror}")
            return Secret("")
        except UnicodeDecodeError:
            r.problem(file_key, "cannot read: not UTF-8 text")
            return Secret("")
    elif r.has(key):
        value = r.raw(key)
        if isinstance(value, list | dict | bool):  # `password: [x]` would become "['x']"
            r.problem(key, f"expected a string, got {type(value).__name__}: quote it")
            return Secret("")
        try:
            raw = expand(str(value), env)
        except ValueError as exc:
            r.problem(key, str(exc))
            return Secret("")
    else:
        r.problem(key, missing)
        return Secret("")
    try:
        return Secret(check(raw))
    except ValueError as exc:
        r.problem(file_key if r.has(file_key) else key, str(exc))
        return Secret("")


def path(r: Reader, key: str, base_dir: Path, env: Mapping[str, str] | None = None) -> Path | None:
    value = r.value(key, str, "")
    if not value:
        return None
    try:
        value = expand(value, env or {})
    except ValueError as exc:
        r.problem(key, str(exc))
        return None
    path = Path(value).expanduser()
    # Relative paths are relative to the config file, so the daemon's working directory never matters.
    return path if path.is_absolute() else (base_dir / path).resolve()


def address(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not a valid e-mail address: {exc}") from None


def ascii_address(value: str) -> str:
    """An address the relay writes into provider mail: the gateway takes ASCII only."""
    checked = address(value)
    if not checked.isascii():
        raise ValueError(
            f"{value!r} must be plain ASCII: the provider's gateway takes no internationalized address"
        )
    return checked


_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


def hostname(value: str) -> str:
    """A host to connect to: a DNS name or an IP address (no port, no scheme)."""
    text = value.strip()
    if _HOSTNAME.fullmatch(text) or _is_ip(text):
        return text
    raise ValueError(f"{value!r} is not a host name or IP address")


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def api_url(value: str) -> str:
    """The base URL of the provider's HTTP API (send.php and the rest are under it)."""
    parsed = urlsplit(value.strip())
    loopback = parsed.hostname in ("localhost", "127.0.0.1", "::1") or (parsed.hostname or "").startswith(
        "127."
    )
    if parsed.scheme not in ("https", "http") or not parsed.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL")
    if parsed.scheme == "http" and not loopback:
        raise ValueError(
            f"{value!r}: use https (every request carries the password); http is for loopback only"
        )
    if parsed.username or parsed.password or parsed.query or parsed.fragment:
        raise ValueError(
            f"{value!r}: no credentials, query or fragment in the URL (the password goes in the body)"
        )
    path = parsed.path if parsed.path.endswith("/") else parsed.path + "/"
    return urlunsplit((parsed.scheme, parsed.netloc, path, "", ""))


def expand(value: str, env: Mapping[str, str]) -> str:
    """Replace ${NAME} and ${NAME:-default} with environment values."""

    def sub(m: re.Match[str]) -> str:
        name, default = m.group("name"), m.group("default")
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ValueError(f"environment variable {name} is not set")

    return _ENV_REF.sub(sub, value)
