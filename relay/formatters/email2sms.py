"""SmsRequest -> the provider's e-mail2sms forwarding: plain text to <login>@send.smscentre.com.

The provider sends the mail's text to the phones set in the account ("In the user settings").
"""

from __future__ import annotations

from relay.errors import ContentError
from relay.model import SmsRequest
from relay.parsers.cleanup import normalize


def address(login: str, domain: str) -> str:
    if not login:
        raise ContentError("email2sms needs provider.login: mail goes to <login>@" + domain)
    return f"{login}@{domain}"


def body(request: SmsRequest) -> str:
    return normalize(request.prefix + request.entries[0].text)
