"""The boilerplate the general summariser drops, line by line (relay/summaries/vocabulary.py):
greetings and sign-offs in the languages alert mail comes in, never a line that says something."""

from __future__ import annotations

import pytest

from relay.summaries.vocabulary import boilerplate

GREETINGS = [
    "Hello,", "Dear Sir or Madam,", "Здравствуйте!", "Sehr geehrte Damen und Herren,", "Lieber Herr Meier,",
    "Guten Tag,", "Bonjour,", "Chère Madame,", "Estimado María,", "Hola,", "Gentile cliente,", "Buongiorno,",
    "Prezado cliente,", "Olá,", "Drogi Adam,", "Szanowni Państwo,", "Dzień dobry,", "Geachte heer,",
    "Beste Jan,", "Vážený zákazníku,", "Dobrý den,",
]  # fmt: skip
SIGNOFFS = [
    "Best regards,", "С уважением,", "Mit freundlichen Grüßen", "Viele Grüße", "Cordialement,", "Saludos cordiales,",
    "Atentamente,", "Cordiali saluti", "Atenciosamente,", "Pozdrawiam", "Z poważaniem,", "Met vriendelijke groet,",
    "S pozdravem",
]  # fmt: skip
CONTENT = [
    "Host db01 is DOWN", "Liebe Grüße aus dem Rechenzentrum: RAID degraded on nas01 since 03:00, disk 3 failed",
    "Disk /var on db01 is 95% full", "Estimado tiempo restante de la batería: 4 minutos en ups-01 (EN BATERÍA)",
    "CRITICAL - load average 12.3 on web-02", "Backup job pgdump failed with status 2",
]  # fmt: skip


@pytest.mark.parametrize("line", GREETINGS)
def test_greetings_are_boilerplate(line: str) -> None:
    assert boilerplate(line) == "greeting"


@pytest.mark.parametrize("line", SIGNOFFS)
def test_signoffs_are_boilerplate(line: str) -> None:
    assert boilerplate(line) == "sign-off"


@pytest.mark.parametrize("line", CONTENT)
def test_a_line_that_says_something_is_kept(line: str) -> None:
    assert boilerplate(line) == ""
