"""DKIM (dkimpy): sign provider mail, verify provider replies, make keys.

dkimpy's DNS lookups block and its RSA runs in Python: callers run these in a thread. The DNS
lookup is injectable (`dnsfunc`), so tests verify against a fixed key. dkimpy (with dnspython,
~4 MiB of RSS) is imported by the first signature or verification, not with this module: the
daemon imports it whether or not the config has a DKIM key or trusts DKIM-signed replies.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from relay.config.schema import DkimKey

DnsFunc = Callable[..., bytes | None]
SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type",
                  b"content-transfer-encoding", b"auto-submitted", b"x-smsc-relay-id"]  # fmt: skip


def sign(key: DkimKey, message: bytes) -> bytes:
    """`message` with a DKIM-Signature header of `key` in front."""
    import dkim

    header = dkim.sign(
        message,
        key.selector.encode(),
        key.domain.encode(),
        key.key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=SIGNED_HEADERS,
    )
    return bytes(header) + message


@dataclass(frozen=True, slots=True)
class Verdict:
    trusted: bool
    reason: str


def verify(message: bytes, *, domains: Sequence[str], dnsfunc: DnsFunc | None = None) -> Verdict:
    """Trust a reply only with a valid signature of one of `domains` covering the whole body."""
    import dkim

    checker = dkim.DKIM(message, minkey=1024)
    try:
        ok = checker.verify(dnsfunc=dnsfunc or dkim.dnsplug.get_txt)
    except dkim.DKIMException as exc:
        return Verdict(False, f"DKIM: {exc}")
    if not ok:
        return Verdict(False, "DKIM: no valid signature")
    if b"l" in checker.signature_fields:
        # l= signs only a prefix of the body: anything appended after it would pass as signed.
        return Verdict(False, "DKIM: body length (l=) signatures are not accepted")
    domain = (checker.domain or b"").decode("ascii", "replace").lower()
    if not any(domain == d or domain.endswith("." + d) for d in domains):
        return Verdict(False, f"DKIM: signed by {domain}, not by {', '.join(domains)}")
    return Verdict(True, f"DKIM: signed by {domain}")


def keygen(private_key: Path, *, domain: str, selector: str, bits: int = 2048) -> str:
    """Write a new RSA private key (mode 0600) and return the DNS TXT record to publish."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is needed to make a key (apt-get install openssl)")
    if private_key.exists():
        raise RuntimeError(f"{private_key} exists; not overwriting a key")
    private_key.parent.mkdir(parents=True, exist_ok=True)
    genpkey = ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{bits}"]
    subprocess.run([*genpkey, "-out", str(private_key)], check=True, capture_output=True)
    private_key.chmod(0o600)
    der = subprocess.run(
        ["openssl", "pkey", "-in", str(private_key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return dns_record(der, domain=domain, selector=selector)


def dns_record(public_der: bytes, *, domain: str, selector: str) -> str:
    p = base64.b64encode(public_der).decode()
    chunks = " ".join(f'"{c}"' for c in re.findall(".{1,250}", f"v=DKIM1; k=rsa; p={p}"))
    return f"{selector}._domainkey.{domain}. IN TXT ( {chunks} )"
