"""SmsRequest -> ProviderMail: the exact mail for the provider, and a masked copy for people."""

from __future__ import annotations

from datetime import datetime

from relay.config.schema import ProviderConfig
from relay.formatters import command, email2sms, mime, segments
from relay.model import ProviderMail, RouteMode, Segments, SmsRequest

MASK = "***"


def build(
    request: SmsRequest,
    provider: ProviderConfig,
    *,
    hostname: str,
    now: datetime,
    with_secret: bool = True,
) -> ProviderMail:
    """`with_secret=False` (the daemon's hot path) skips building the sendable copy when the
    spool will keep only the masked one; `message` is then the masked mail too."""
    creds = command.Credentials(provider.login, provider.password.value)
    masked_creds = command.Credentials(creds.login, MASK)
    if request.mode is RouteMode.EMAIL2SMS:
        rcpt_to = email2sms.address(provider.login, provider.email2sms_domain)
        real = masked = email2sms.body(request)
        texts = [request.entries[0].text]
    else:
        rcpt_to = provider.address
        test = request.options.test or provider.test_flag
        masked = command.format_command(request, masked_creds, test)
        real = command.format_command(request, creds, test) if with_secret else masked
        texts = [e.text for e in request.entries]
    envelope = mime.Envelope(
        mail_from=provider.reply_address,
        rcpt_to=rcpt_to,
        subject=f"SMS {request.relay_id}",
        relay_id=request.relay_id,
        hostname=hostname,
    )
    masked_message = mime.build(masked, envelope, provider.charset, now)
    message = masked_message if real is masked else mime.build(real, envelope, provider.charset, now)
    return ProviderMail(
        relay_id=request.relay_id,
        mode=request.mode,
        route=request.route,
        mail_from=provider.reply_address,
        rcpt_to=rcpt_to,
        message=message,
        masked=masked_message.decode("ascii"),
        phones=request.phones,
        texts=tuple(texts),
        segments=_largest(texts, request.translit),
        rcpt_tos=request.rcpt_tos,
        keeps_config_secret=request.mode is not RouteMode.EMAIL2SMS,
        entries=request.entries if request.mode is not RouteMode.EMAIL2SMS else (),
    )


def retag_from(message: bytes, address: str, tagged: str) -> bytes:
    """The provider mail with its From: (the reply address, as the relay wrote it) tagged too,
    so a reply to either the envelope or the header comes back to the tagged address."""
    head, sep, body = message.partition(b"\r\n\r\n")
    old, new = f"\r\nFrom: {address}\r\n".encode(), f"\r\nFrom: {tagged}\r\n".encode()
    return (b"\r\n" + head + b"\r\n").replace(old, new, 1)[2:-2] + sep + body


def unmask(masked: bytes, provider: ProviderConfig) -> bytes:
    """The sendable mail from a masked one: the configured login and password put back in.

    Done at send time, so the spool never holds the secret, and a rotated password applies
    to mail already queued.
    """

    def put_back(body: str) -> str:
        _login, masked_password, rest = body.split(":", 2)
        if masked_password != MASK:
            raise ValueError("spooled provider mail is not masked")
        return f"{provider.login}:{provider.password.value}:{rest}"

    return mime.replace_body(masked, put_back)


def _largest(texts: list[str], translit: int) -> Segments:
    counted = [segments.count(t, translit=translit) for t in texts] or [segments.count("")]
    return max(counted, key=lambda s: (s.parts, s.units))
