"""SMS part counting (GSM-7 with its extension table vs UCS-2) and cutting to fit."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.formatters import segments
from relay.model import Encoding, Segments


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("", Segments(Encoding.GSM7, 0, 0)),
        ("a" * 160, Segments(Encoding.GSM7, 160, 1)),
        ("a" * 161, Segments(Encoding.GSM7, 161, 2)),
        ("a" * 306, Segments(Encoding.GSM7, 306, 2)),
        ("a" * 307, Segments(Encoding.GSM7, 307, 3)),
        ("€" * 80, Segments(Encoding.GSM7, 160, 1)),  # extension characters count twice
        ("€" * 81, Segments(Encoding.GSM7, 162, 2)),
        ("a" * 152 + "€", Segments(Encoding.GSM7, 154, 1)),
        ("a" * 153 + "{" * 4, Segments(Encoding.GSM7, 161, 2)),
        ("я" * 70, Segments(Encoding.UCS2, 70, 1)),
        ("я" * 71, Segments(Encoding.UCS2, 71, 2)),
        ("я" * 134, Segments(Encoding.UCS2, 134, 2)),
        ("я" * 135, Segments(Encoding.UCS2, 135, 3)),
        ("a" * 69 + "я", Segments(Encoding.UCS2, 70, 1)),  # one Cyrillic letter makes it all UCS-2
        ("🔥" * 35, Segments(Encoding.UCS2, 70, 1)),  # emoji are two UTF-16 units
        ("🔥" * 36, Segments(Encoding.UCS2, 72, 2)),
        ("ÄÖÑÜäöñüàèéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ@£$¥§¿¡", Segments(Encoding.GSM7, 41, 1)),
    ],
)
def test_count(text: str, want: Segments) -> None:
    assert segments.count(text) == want


def test_a_part_never_splits_a_character() -> None:
    # 66 Cyrillic + one emoji: the emoji cannot straddle parts 1 and 2 of 67 units.
    assert segments.count("я" * 66 + "🔥" + "я" * 10).parts == 2
    assert segments.count("a" * 152 + "€" + "a" * 10).parts == 2


def test_translit_counts_latin() -> None:
    assert segments.count("Привет", translit=1) == Segments(Encoding.GSM7, 6, 1)  # "Privet"
    assert segments.transliterate("Щука") == "Shhuka"


def test_fold_to_gsm_only_when_it_pays() -> None:
    assert segments.fold_to_gsm("“Quoted” — done…") == '"Quoted" - done...'
    assert segments.fold_to_gsm("Привет “мир”") == "Привет “мир”"  # UCS-2 anyway: keep the original


def test_fit_cuts_at_word_boundary_with_marker() -> None:
    text = "word " * 100
    cut = segments.fit(text, max_chars=50)
    assert cut == "word word word word word word word word word..."
    assert len(cut) <= 50
    assert segments.fit("short", max_chars=50) == "short"


def test_fit_by_parts() -> None:
    text = "Авария " * 40
    cut = segments.fit(text, max_chars=1000, max_parts=1)
    assert segments.count(cut).parts == 1
    assert cut.endswith("...")
    two = segments.fit(text, max_chars=1000, max_parts=2)
    assert segments.count(two).parts == 2 and len(two) > len(cut)


def test_fit_long_word_is_cut_mid_word() -> None:
    assert segments.fit("x" * 100, max_chars=10) == "xxxxxxx..."


# ---- the fast counting against the plain definition -------------------------------------------
def reference_count(text: str) -> Segments:
    """The definition the fast code must keep: every character tested against the GSM sets."""
    gsm = all(ch in segments.GSM_ALL for ch in text)
    encoding = Encoding.GSM7 if gsm else Encoding.UCS2
    sizes = [2 if (ch in segments.GSM_EXTENSION if gsm else ord(ch) > 0xFFFF) else 1 for ch in text]
    total = sum(sizes)
    if total <= segments.SINGLE[encoding]:
        return Segments(encoding, total, 1 if total else 0)
    parts, used = 1, 0
    for size in sizes:
        if used + size > segments.MULTI[encoding]:
            parts, used = parts + 1, 0
        used += size
    return Segments(encoding, total, parts)


# GSM basic, the extension (two septets, € among them), ASCII outside GSM (`, controls), Cyrillic,
# an emoji (two UTF-16 units): long runs to cross the part boundaries
ALPHABET = [*"aZ0 .\n@$", *"^{}\\[~]|€\f", "`", "\x01", "\t", "ж", "é", "😀"]


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=st.sampled_from(ALPHABET), max_size=400))
def test_count_keeps_the_definition(text: str) -> None:
    assert segments.count(text) == reference_count(text)
    assert segments.encoding_for(text) is reference_count(text).encoding


def test_accents_gsm7_lacks_are_folded_when_that_makes_the_text_gsm7() -> None:
    assert segments.fold_accents("ningúna copia de portatil-garcía") == "ninguna copia de portatil-garcia"
    assert (
        segments.fold_accents("café à Noël, Müller, niño") == "café à Noel, Müller, niño"
    )  # GSM-7 has é à ü ñ
    assert segments.fold_accents("ошибка на сервере") == "ошибка на сервере"  # Cyrillic is not Latin
    assert segments.fold_accents("błąd ú") == "błąd ú"  # ł has no plain letter: UCS-2 either way


@settings(max_examples=300)
@given(st.text(max_size=80))
def test_folding_accents_keeps_length_and_gives_gsm7_or_nothing(text: str) -> None:
    folded = segments.fold_accents(text)
    assert folded == text or (segments.encoding_for(folded) is Encoding.GSM7 and len(folded) == len(text))
