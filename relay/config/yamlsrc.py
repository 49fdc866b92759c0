"""YAML loading that remembers line numbers, so every config error can name its line.

A subclass of yaml.SafeLoader: the safe constructors only; duplicate keys are an error.
"""

from __future__ import annotations

from typing import Any

import yaml


class LineDict(dict[Any, Any]):
    """A mapping that knows the line of itself and of each key (1-based)."""

    line: int = 0
    lines: dict[Any, int]


class LineList(list[Any]):
    """A sequence that knows the line of itself and of each item (1-based)."""

    line: int = 0
    lines: list[int]


class DuplicateKeyError(yaml.YAMLError):
    pass


class _Loader(yaml.SafeLoader):
    pass


def _mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    result = LineDict()
    result.line = node.start_mark.line + 1
    result.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise DuplicateKeyError(
                f"line {key_node.start_mark.line + 1}: duplicate key {key!r} "
                f"(first on line {result.lines[key]})"
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = key_node.start_mark.line + 1
    return result


def _sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    result = LineList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.lines = [child.start_mark.line + 1 for child in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _sequence)


def load(text: str) -> Any:
    """Parse YAML text; raises yaml.YAMLError (with a line) for syntax errors."""
    return yaml.load(text, Loader=_Loader)


_HINTS = (
    ("\t", "YAML does not allow tabs: indent with spaces"),
    ("mapping values are not allowed", "a value that holds ': ' needs quotes, or this line is indented "
     "deeper than the key above it"),
    ("could not find expected ':'", "a line that is not `key: value`, or a quote opened above and not "
     "closed"),
    ("did not find expected key", "this line's indentation does not match the lines above it"),
    ("expected <block end>", "this line's indentation does not match the lines above it"),
    ("unexpected end of stream", "a quote or bracket opened above is not closed"),
    ("flow", "a [ or { opened above is not closed, or a comma is missing"),
    ("found undefined alias", "`*` starts an alias in YAML: quote a value that begins with *"),
    ("found character '%'", "`%` cannot start a value: quote it"),
    ("found character '@'", "`@` cannot start a value: quote it"),
)  # fmt: skip


def syntax_problem(exc: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    """A YAML syntax error for people: the line, the column, the line itself with a caret, and a
    hint for the usual causes (a tab, an indentation, an unquoted ': ')."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    what = getattr(exc, "problem", None) or str(exc).split("\n", 1)[0]
    context = getattr(exc, "context", None) or ""
    if isinstance(exc, DuplicateKeyError) or mark is None:
        return None, " ".join(str(exc).split())
    lines = text.split("\n")
    source = lines[mark.line] if mark.line < len(lines) else ""
    shown = source.replace("\t", "→")  # a tab, visible and one column wide like the caret's count
    hint = next(
        (h for key, h in _HINTS if key in f"{what} {context}" or (key == "\t" and "\t" in source)), ""
    )
    message = f"YAML syntax: {what} at column {mark.column + 1}:\n      {shown}\n      {' ' * mark.column}^"
    return mark.line + 1, message + (f"\n    hint: {hint}" if hint else "")
