"""A reader that walks a YAML mapping by key path and collects every problem it finds.

The config loader asks it for typed values; a wrong value is recorded (with key path and line)
and replaced by the default, so one run reports all problems instead of the first.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

from relay.config.yamlsrc import LineDict, LineList
from relay.errors import Problem

T = TypeVar("T")


class Reader:
    """One mapping of the config, at `path`; tracks which keys were read."""

    def __init__(self, problems: list[Problem], data: Any, path: str, line: int | None) -> None:
        self.problems = problems
        self.path = path
        self.line = line
        self.read: set[str] = set()
        # Set first: reporting a problem reads it (for the line)
        self.data: dict[str, Any] = data if isinstance(data, dict) else LineDict()
        if data is not None and not isinstance(data, dict):
            self.problem(None, f"expected a mapping, got {_kind(data)}")

    def key_path(self, key: str | None) -> str:
        if key is None:
            return self.path or "(top)"
        return f"{self.path}.{key}" if self.path else key

    def line_of(self, key: str | None) -> int | None:
        lines = getattr(self.data, "lines", {})
        return lines.get(key) or getattr(self.data, "line", None) or self.line

    def problem(self, key: str | None, message: str) -> None:
        self.problems.append(Problem(self.key_path(key), self.line_of(key), message))

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        self.read.add(key)
        return self.data.get(key)

    def value(self, key: str, kind: type[T], default: T, *, required: bool = False) -> T:
        value = self.raw(key)
        if value is None:
            if required:
                self.problem(key, "is required")
            return default
        # YAML reads `yes`/`no` as bool and bool is an int: keep those apart.
        if kind is int and isinstance(value, bool):
            self.problem(key, f"expected an integer, got {value!r}")
            return default
        if kind is str and isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)  # a numeric sender or login written without quotes
        if not isinstance(value, kind):
            self.problem(key, f"expected {kind.__name__}, got {_kind(value)} {value!r}")
            return default
        return value

    def checked(self, key: str, check: Callable[[Any], T], default: T, *, kind: type = str) -> T:
        """Read `key` as `kind` and pass it through a validator that raises ValueError."""
        value = self.value(key, kind, None)
        if value is None:
            return default
        try:
            return check(value)
        except ValueError as exc:
            self.problem(key, str(exc))
            return default

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self.value(key, int, default)
        if not lo <= value <= hi:
            self.problem(key, f"{value} is out of range {lo}..{hi}")
            return default
        return value

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.value(key, str, default)
        if value not in choices:
            self.problem(key, f"{value!r} is not one of {', '.join(choices)}")
            return default
        return value

    def items(self, key: str) -> list[tuple[Any, str, int | None]]:
        """The items of a list with their key paths and lines; a scalar counts as a one-item list."""
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            return [(value, self.key_path(key), self.line_of(key))]
        lines = getattr(value, "lines", [])
        return [
            (item, f"{self.key_path(key)}[{i}]", lines[i] if i < len(lines) else self.line_of(key))
            for i, item in enumerate(value)
        ]

    def child(self, key: str) -> Reader:
        value = self.raw(key)
        line = getattr(value, "line", None) or self.line_of(key)
        return Reader(self.problems, value, self.key_path(key), line)

    def finish(self) -> None:
        """Report keys nobody asked for: most often a typo that would silently do nothing."""
        for key in self.data:
            if key not in self.read:
                hint = difflib.get_close_matches(str(key), sorted(self.read), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                self.problem(str(key), f"unknown key{extra}")


def _kind(value: Any) -> str:
    if isinstance(value, LineList | list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
