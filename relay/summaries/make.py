"""Building a recogniser's summary: pieces folded to one line each and composed."""

from __future__ import annotations

from collections.abc import Callable

from relay.formatters import segments
from relay.model import AlertSummary, InboundMail, Piece, Role
from relay.summaries.fit import compose
from relay.summaries.general import identity
from relay.summaries.vocabulary import plain

Recogniser = Callable[[InboundMail], AlertSummary | None]


def folded(pieces: list[Piece]) -> list[Piece]:
    """Pieces on one line each, pictographs gone; a host only folded (`plain` would drop a
    name made of symbols)."""
    return [
        Piece(p.role, (segments.fold_to_gsm if p.role is Role.HOST else plain)(" ".join(p.text.split())).strip(" ;,"),
              p.sep)
        for p in pieces
    ]  # fmt: skip


def summary_of(
    name: str, pieces: list[Piece], host: str, key: tuple[str, ...], recovery: bool, dropped: tuple[str, ...]
) -> AlertSummary:
    return AlertSummary(name, compose(folded(pieces)), host, identity(name, *key), recovery, dropped)
