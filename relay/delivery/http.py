"""The provider's HTTP API: send.php as a transport, status.php and balance.php for tracking.

One httpx client for the whole relay (a small keep-alive pool), TLS verified against the
system's trust store. The password travels only in POST bodies: never in a URL, a log line
or an error text (httpx logs URLs at DEBUG, and ours carry no secret).

A failed request is "not known whether it was sent" unless the connection was never made:
such a message is marked `uncertain`, and before it is sent again status.php is asked whether
the provider has it. Error 9 ("identical request within a minute", or too many at once) is
answered the same way: only a request the provider really did not register is sent again.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relay.config.schema import ProviderConfig
from relay.delivery.transport import Accepted, Outgoing
from relay.delivery.uncertain import PROVIDER_MINUTE, registered
from relay.errors import ContentError, UpstreamDeferred, UpstreamRefused, UpstreamTimeout, UpstreamUnavailable
from relay.formatters import api, mime
from relay.model import PhoneStatus, ProviderReply, ReplyKind, TransportKind
from relay.parsers import api as answers
from relay.parsers import command

if TYPE_CHECKING:
    import httpx  # imported by the first request: a relay that never uses the API never loads it

log = logging.getLogger("relay.delivery")
DUPLICATE = 9  # send.php: an identical request within a minute, or 15 concurrent requests


@dataclass(frozen=True, slots=True)
class Answer:
    body: bytes
    url: str  # which base URL answered (api_url or a mirror)


class ApiClient:
    """POSTs to send.php / status.php / balance.php under the configured base URLs, in order."""

    def __init__(
        self,
        provider: Callable[[], ProviderConfig],
        timeout: Callable[[], float],
        *,
        connections: int = 4,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider  # the config in force (SIGHUP may change URLs and password)
        self.timeout = timeout
        self.requests = 0  # made so far, for tests and stats
        self._connections = connections
        self._transport = transport
        # Made by the first request: the daemon builds one ApiClient whatever the transport, and
        # httpx with its CA store is ~8 MiB of RSS that an SMTP-only relay would carry for nothing.
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(
                verify=ssl.create_default_context(),  # the system's CAs, as every other client here
                limits=httpx.Limits(
                    max_connections=self._connections, max_keepalive_connections=self._connections
                ),
                headers={"User-Agent": "smsc-relay"},
                follow_redirects=False,  # a redirect would carry the POST body somewhere we did not choose
                transport=self._transport,
            )
        return self._client

    async def post(self, method: str, form: Sequence[tuple[str, str]]) -> Answer:
        """The first base URL that answers. Raises UpstreamUnavailable (or UpstreamTimeout)
        when none does; `uncertain` when one may have processed the request."""
        import httpx

        client = self._http()
        errors: list[str] = []
        uncertain = timed_out = False
        timeout = self.timeout()
        for base in self.provider().api_urls:
            url = base + method
            self.requests += 1
            try:
                response = await client.post(url, data=dict(form), timeout=timeout)
                body = await response.aread()
            except httpx.TimeoutException as exc:
                timed_out = True
                uncertain |= not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
                errors.append(f"{_where(url)}: timed out after {timeout:.0f} s")
                continue
            except httpx.HTTPError as exc:
                uncertain |= not isinstance(exc, httpx.ConnectError)
                errors.append(f"{_where(url)}: {_describe(exc)}")
                continue
            if response.status_code >= 500:
                uncertain = True
                errors.append(f"{_where(url)}: HTTP {response.status_code}")
                continue
            return Answer(body, base)
        text = "; ".join(errors) or "no api_url configured"
        if timed_out:
            raise UpstreamTimeout(text, uncertain=uncertain)
        raise UpstreamUnavailable(text, uncertain=uncertain)

    async def statuses(self, pairs: list[tuple[str, str]], *, listed: bool = True) -> list[PhoneStatus]:
        """status.php in its list form for (relay id, phone) pairs (`listed=False`: one pair in
        the single form). Raises StatusError when the provider answers an error (9: its
        limits), DeliveryError when it cannot be asked."""
        p = self.provider()
        form = api.status_form(p.login, p.password.value, pairs, api_key=p.api_key, listed=listed)
        answer = await self.post("status.php", form)
        try:
            return answers.statuses(answer.body, pairs)
        except ValueError as exc:  # StatusError (an error answer) is not one: it goes to the caller
            raise UpstreamDeferred(f"status.php: {exc}") from None

    async def balance(self) -> str:
        p = self.provider()
        answer = await self.post(
            "balance.php", api.balance_form(p.login, p.password.value, api_key=p.api_key)
        )
        try:
            return answers.balance(answer.body)
        except ValueError as exc:
            raise UpstreamDeferred(f"balance.php: {exc}") from None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class HttpTransport:
    """send.php for each provider request; the answer is the provider's word at once (OK with
    SMS count, cost and balance, or ERROR N), applied like a reply mail by delivery."""

    needs_credentials = True
    carries_mail = False

    def __init__(self, client: ApiClient) -> None:
        self.client = client

    async def send(self, mail: Outgoing) -> Accepted:
        try:
            request = command.parse(mime.body_text(mail.message))
        except (ContentError, ValueError) as exc:  # not a command line: email2sms, a bug
            raise UpstreamRefused(f"cannot be sent over the HTTP API: {exc}") from None
        if mail.uncertain:
            known = await registered(self.client, request)
            if known is not None:
                return known
        provider = self.client.provider()
        answer = await self.client.post("send.php", api.send_form(request, api_key=provider.api_key))
        try:
            reply = answers.send_answer(answer.body, request.request_id)
        except ValueError as exc:
            # An answer we cannot read: the request may have been taken.
            raise UpstreamDeferred(f"send.php at {_where(answer.url)}: {exc}", uncertain=True) from None
        if reply.kind is ReplyKind.ERROR and reply.code == DUPLICATE:
            known = await registered(self.client, request)
            if known is not None:
                return known
            raise UpstreamDeferred(
                "provider ERROR 9 and status.php does not know the message (too many requests at"
                " once): sent again after the provider's minute",
                retry_after=PROVIDER_MINUTE,
            )
        return Accepted(_summary(reply, answer.url), answer=reply, raw=answer.body, via=TransportKind.HTTP)

    async def close(self) -> None:
        return None  # the client is the relay's, shared by every worker


def _summary(reply: ProviderReply, url: str) -> str:
    if reply.kind is ReplyKind.OK:
        extra = f", cost {reply.cost}" if reply.cost else ""
        return f"{_where(url)}send.php: OK - {reply.sms_count} SMS{extra}"
    return f"{_where(url)}send.php: ERROR {reply.code} ({reply.description})"


def _where(url: str) -> str:
    import httpx  # loaded: a request was made to that URL

    parsed = httpx.URL(url)
    return f"{parsed.scheme}://{parsed.netloc.decode('ascii')}{parsed.path.rsplit('/', 1)[0]}/"


def _describe(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if text != exc.__class__.__name__ else text
