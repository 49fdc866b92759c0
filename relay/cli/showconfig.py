"""`smsc-relay config [--diff] [--json]`: the effective configuration, every default filled in and
every secret masked, as `postconf` shows Postfix's; `--diff` only what differs from the defaults
(`postconf -n`). Names are the schema's (relay/config/schema.py): mostly the YAML keys, with a
few gathered (`provider.hosts` is `host` and its backups, `api_urls` is `api_url` and mirrors)."""

from __future__ import annotations

import argparse
import dataclasses
import enum
import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from relay.config import schema
from relay.config.load import load
from relay.errors import Exit
from relay.model import Secret

MASK = "***"
# Values that are secrets whatever their type: a key's PEM, AUTH users' password hashes.
_SECRET_FIELDS = frozenset({"key", "users", "password", "dsn"})

EXAMPLES = """examples:
  smsc-relay config -c /etc/smsc-relay/relay.yaml          everything, defaults included
  smsc-relay config -c /etc/smsc-relay/relay.yaml --diff   only what the file changes"""


def add_command(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("config", parents=[common], help="the effective configuration, secrets masked",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--diff", action="store_true", help="only what differs from the defaults")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_config)


def cmd_config(args: argparse.Namespace) -> int:
    cfg = load(args.config, secrets=False)
    data = effective(cfg, diff=args.diff)
    if args.json:
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        print(yaml.safe_dump(data, allow_unicode=True, sort_keys=False, default_flow_style=False).rstrip())
    return Exit.OK


def effective(cfg: schema.Config, *, diff: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        if f.name == "source":
            continue
        value = getattr(cfg, f.name)
        if f.name == "routes":
            out["routes"] = [_route(r, diff) for r in value]
        elif f.name == "summaries":
            out["summaries"] = [_plain(r, None, diff) for r in value] if value or not diff else None
        elif dataclasses.is_dataclass(value) and not isinstance(value, type | Secret):
            out[f.name] = _plain(value, _default_of(type(value)), diff)
        else:
            out[f.name] = _value(f.name, value)
        if diff and out.get(f.name) in (None, {}, []):
            out.pop(f.name, None)
    return out


def _route(route: schema.Route, diff: bool) -> dict[str, Any]:
    shown = _plain(route, schema.Route(route.name, route.recipient), diff)
    # always, and first: they say which route it is
    return {"name": route.name, "recipient": route.recipient.pattern, **shown}


def _default_of(kind: type) -> Any:
    try:
        return kind()
    except TypeError:  # a type with a required field (ProviderConfig's password)
        return kind(Secret(""))


def _plain(obj: Any, default: Any, diff: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if diff and default is not None and value == getattr(default, f.name):
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, type | Secret):
            inner = _plain(value, getattr(default, f.name, None) if default is not None else None, diff)
            if f.name in _SECRET_FIELDS:
                inner = {k: MASK for k in inner}
            out[f.name] = inner
        else:
            out[f.name] = _value(f.name, value)
    return out


def _value(name: str, value: Any) -> Any:
    if isinstance(value, Secret):
        return MASK if value.value else ""
    if name in _SECRET_FIELDS and value:
        return {k: MASK for k in value} if isinstance(value, Mapping) else MASK
    if isinstance(value, bytes):
        return MASK
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, re.Pattern):
        return value.pattern
    if isinstance(value, Path | ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type | Secret):
        return _plain(value, None, False)
    if isinstance(value, Mapping):
        return {str(k): _value(str(k), v) for k, v in value.items()}
    if isinstance(value, tuple | list | frozenset | set):
        return [_value(name, v) for v in value]
    return value
