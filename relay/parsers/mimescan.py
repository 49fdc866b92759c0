"""MIME structure bounded before the parser sees it: nesting depth and part count.

The stdlib parser recurses once per nesting level (a mail nested 1,000 deep raised
RecursionError, a 451 the sender retried for days) and builds an object per part. This scan
reads only the boundary declarations and delimiter lines, in one pass over the bytes, and
answers a mail over a limit with a permanent 554 5.6.0 that names the limit.

It errs on the side of the mail: a `boundary=` that is not in a header only adds a level if
its delimiters follow, and a delimiter closes every level opened inside its own.
"""

from __future__ import annotations

import re

from relay.errors import ContentError

# A boundary parameter (RFC 2046: up to 70 characters, quoted or a token) anywhere in the mail.
_DECLARED = re.compile(rb"""boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s";]{1,200}))""", re.IGNORECASE)
_LINE = re.compile(rb"^--([^\r\n]*?)[ \t]*\r?$", re.MULTILINE)


def check(raw: bytes, *, max_depth: int, max_parts: int) -> None:
    """Raise ContentError (554 5.6.0) when the mail nests multiparts deeper than `max_depth`
    or has more than `max_parts` parts."""
    if b"oundary" not in raw and b"OUNDARY" not in raw:
        return  # no multipart at all (most alert mail): nothing to count
    declared = [(m.start(), m.group(1) or m.group(2)) for m in _DECLARED.finditer(raw)]
    if not declared:
        return
    names = {name for _, name in declared}
    stack: list[bytes] = []
    parts = 0
    events = iter(declared)
    upcoming = next(events, None)
    for line in _LINE.finditer(raw):
        # Declarations before this delimiter open their levels, in order.
        while upcoming is not None and upcoming[0] < line.start():
            stack.append(upcoming[1])
            if len(stack) > max_depth:
                raise ContentError(
                    f"MIME parts nested deeper than {max_depth} levels (parsing.max_mime_depth)"
                )
            upcoming = next(events, None)
        text = line.group(1)
        closing = text.endswith(b"--") and text[:-2] in names
        name = text[:-2] if closing else text
        if name not in names or name not in stack:
            continue
        del stack[stack.index(name) + 1 :]  # the levels opened inside it end here
        if closing:
            stack.pop()
        else:
            parts += 1
            if parts > max_parts:
                raise ContentError(f"more than {max_parts} MIME parts (parsing.max_mime_parts)")
    while upcoming is not None:  # declared after the last delimiter: still a level
        stack.append(upcoming[1])
        if len(stack) > max_depth:
            raise ContentError(f"MIME parts nested deeper than {max_depth} levels (parsing.max_mime_depth)")
        upcoming = next(events, None)
