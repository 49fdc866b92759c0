"""The security floors: each of these releases fixes a CVE that matters to a mail relay."""

from __future__ import annotations

from importlib.metadata import version

import pytest

FLOORS = {
    "aiosmtpd": (1, 4, 6),  # CVE-2024-27305 SMTP smuggling, CVE-2024-34083 STARTTLS injection
    "aiosmtplib": (5, 1, 3),  # CR/LF command injection, STARTTLS response injection, reply desync
    "dkimpy": (1, 1, 8),  # key-file permissions race, x= expiry checks
}


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_installed_version_meets_floor(package: str) -> None:
    installed = tuple(int(p) for p in version(package).split(".")[:3] if p.isdigit())
    assert installed >= FLOORS[package], f"{package} {version(package)} is below the security floor"
