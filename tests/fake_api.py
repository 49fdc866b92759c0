"""A fake of the provider's HTTP API (send.php, status.php, balance.php) on a real HTTP server.

It follows ../shared/provider-docs/http-api-notes.md: windows-1251 unless `charset` says
otherwise (a client that forgets charset=utf-8 gets its Cyrillic garbled, and a test sees it),
fmt=3 JSON answers and error bodies, error 9 for an identical request within a minute and for
15 concurrent requests, the per-phone flood rule, statuses that advance with time (-1, 0,
then final), status.php's own limits (one list request a minute, five per message), balance.
Its clock is the test's, so time can be moved instead of waited for.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import parse_qsl

from aiohttp import web

from relay import fields

LOGIN, PASSWORD, API_KEY = "mylogin", "T0p-s3cret,pw", "k3y-0f-the-api"


@dataclass
class Sms:
    """One message to one phone, as the fake registered it."""

    relay_id: str
    phone: str
    text: str
    parts: int
    at: float  # the fake's clock


@dataclass
class FakeApi:
    clock: Callable[[], float] = time.time
    password: str = PASSWORD  # the account's (an SMPP test's has 8 characters at most)
    balance: Decimal = Decimal("100.00")
    price: Decimal = Decimal("1.50")  # per SMS part
    # Statuses advance: -1 for `queued_for` seconds, 0 until `final_after`, then final.
    queued_for: float = 2.0
    final_after: float = 10.0
    outcome: dict[str, int] = field(default_factory=dict)  # phone -> final status (default 1)
    errors: dict[str, int] = field(default_factory=dict)  # phone -> send.php error code
    # send.php misbehaviour, consumed one per request: "stall" (registers, answers after
    # `stall_for`), "stall-before" (answers late, registers nothing), "500" (nothing
    # registered), "500-after" (registered, then 500), "garbage" (registered, not JSON).
    faults: list[str] = field(default_factory=list)
    stall_for: float = 30.0
    service_delay: float = 0.0  # seconds each send.php takes (the benchmark's provider latency)
    sms: list[Sms] = field(default_factory=list)
    forms: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (method, form) asked
    urls: list[str] = field(default_factory=list)  # every request's full URL (query included)
    answers: list[tuple[str, dict[str, object] | str]] = field(default_factory=list)
    status_lists: list[float] = field(default_factory=list)  # when list requests came
    status_by_id: dict[str, list[float]] = field(default_factory=dict)
    status_errors: int = 0
    inflight: int = 0
    most_inflight: int = 0
    _identical: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    _by_phone: dict[str, list[float]] = field(default_factory=dict)

    # ---- the server ------------------------------------------------------------------------
    async def start(self, ssl_context: ssl.SSLContext | None = None) -> tuple[web.AppRunner, str]:
        app = web.Application()
        app.router.add_route("*", "/sys/send.php", self._send)
        app.router.add_route("*", "/sys/status.php", self._status)
        app.router.add_route("*", "/sys/balance.php", self._balance)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        port = runner.addresses[0][1]
        scheme = "https" if ssl_context else "http"
        return runner, f"{scheme}://127.0.0.1:{port}/sys/"

    async def _form(self, request: web.Request) -> dict[str, str]:
        """The parameters as the provider reads them: query and body, in `charset` (default
        windows-1251: UTF-8 sent without charset=utf-8 comes out garbled)."""
        self.urls.append(str(request.url))
        raw = request.query_string + "&" + (await request.read()).decode("ascii", "replace")
        first = dict(parse_qsl(raw, keep_blank_values=True, encoding="latin-1"))
        charset = first.get("charset", "windows-1251")
        return dict(parse_qsl(raw, keep_blank_values=True, encoding=charset, errors="replace"))

    def _answer(
        self, method: str, data: dict[str, object] | list[dict[str, object]], fmt: str
    ) -> web.Response:
        self.answers.append((method, data if isinstance(data, dict) else {"list": data}))
        if fmt == "3":
            return web.Response(text=json.dumps(data, ensure_ascii=False), content_type="application/json")
        assert isinstance(data, dict)
        if "error_code" in data:
            return web.Response(text=f"ERROR = {data['error_code']} ({data['error']})")
        return web.Response(text=f"OK - {data['cnt']} SMS, ID - {data['id']}")

    def _auth(self, form: dict[str, str]) -> bool:
        return form.get("apikey") == API_KEY or (
            form.get("login") == LOGIN and form.get("psw") == self.password
        )

    # ---- send.php --------------------------------------------------------------------------
    async def _send(self, request: web.Request) -> web.StreamResponse:
        self.inflight += 1
        self.most_inflight = max(self.most_inflight, self.inflight)
        try:
            form = await self._form(request)
            self.forms.append(("send", form))
            if self.service_delay:
                await asyncio.sleep(self.service_delay)
            fault = self.faults.pop(0) if self.faults else ""
            if fault == "stall-before":
                await asyncio.sleep(self.stall_for)
            if fault == "500":
                return web.Response(status=500, text="Internal Server Error")
            concurrent = self.inflight >= 15
            data = self._process(form, concurrent)
            if fault == "stall":
                await asyncio.sleep(self.stall_for)
            if fault == "500-after":
                return web.Response(status=502, text="Bad Gateway")
            if fault == "garbage":
                return web.Response(status=200, text="<html>maintenance</html>")
            return self._answer("send", data, form.get("fmt", "0"))
        finally:
            self.inflight -= 1

    def _process(self, form: dict[str, str], concurrent: bool) -> dict[str, object]:
        def error(code: int, text: str, registered: bool = False) -> dict[str, object]:
            result: dict[str, object] = {"error": text, "error_code": code}
            if registered:
                result["id"] = form.get("id", "")
            return result

        if concurrent:
            return error(9, "duplicate request, wait a minute")
        if not self._auth(form):
            return error(2, "authorise error")
        now = self.clock()
        key = tuple(sorted(form.items()))
        if now - self._identical.get(key, -1e9) < 60:
            return error(9, "duplicate request, wait a minute")
        self._identical[key] = now
        try:
            entries = self._entries(form)
        except ValueError as exc:
            return error(1, str(exc))
        for phones, _ in entries:
            for phone in phones:
                if phone in self.errors:
                    return error(
                        self.errors[phone], f"error {self.errors[phone]}", self.errors[phone] in (3, 6, 7, 8)
                    )
                times = self._by_phone.get(phone, [])
                short = 0
                for earlier, later in zip(times, [*times[1:], now], strict=False):
                    short = short + 1 if later - earlier < 60 else 0
                if short >= 50:
                    return error(8, "flood: more than 50 messages with gaps under a minute")
        cnt = 0
        relay_id = form.get("id", "")
        records = []
        for phones, text in entries:
            parts = _parts(text)
            for phone in phones:
                self.sms.append(Sms(relay_id, phone, text, parts, now))
                self._by_phone.setdefault(phone, []).append(now)
                cnt += parts
                records.append(
                    {
                        "phone": phone,
                        "mccmnc": "25001",
                        "cost": str(self.price * parts),
                        "status": 0,
                        "error": 0,
                    }
                )
        cost = self.price * cnt
        if cost > self.balance:
            return error(3, "no money", True)
        self.balance -= cost
        result: dict[str, object] = {"id": relay_id, "cnt": cnt}
        if form.get("cost") in ("2", "3"):
            result["cost"] = str(cost)
        if form.get("cost") == "3":
            result["balance"] = str(self.balance)
        if form.get("op") == "1":
            result["phones"] = records
        return result

    def _entries(self, form: dict[str, str]) -> list[tuple[list[str], str]]:
        if "list" in form:
            result = []
            for line in form["list"].split("\n"):
                phones, sep, text = line.partition(":")
                if not sep:
                    raise ValueError(f"bad list line {line[:30]!r}")
                result.append((_phones(phones), text.replace("\\n", "\n")))
            return result
        if "phones" not in form or "mes" not in form:
            raise ValueError("phones and mes, or list, are required")
        if len(form["mes"]) > 1000:
            raise ValueError("message too long")
        return [(_phones(form["phones"]), form["mes"])]

    # ---- status.php ------------------------------------------------------------------------
    def status_of(self, relay_id: str, phone: str) -> tuple[int, float]:
        found = [s for s in self.sms if s.relay_id == relay_id and s.phone.lstrip("+") == phone.lstrip("+")]
        if not found:
            return -3, 0.0
        age = self.clock() - found[-1].at
        if age < self.queued_for:
            return -1, found[-1].at
        if age < self.final_after:
            return 0, found[-1].at
        return self.outcome.get(phone, 1), found[-1].at + self.final_after

    async def _status(self, request: web.Request) -> web.StreamResponse:
        form = await self._form(request)
        self.forms.append(("status", form))
        fmt = form.get("fmt", "0")
        if not self._auth(form):
            return self._answer("status", {"error": "authorise error", "error_code": 2}, fmt)
        ids, phones = form.get("id", "").split(","), form.get("phone", "").split(",")
        listed = len(ids) > 1
        pairs = [(i, p) for i, p in zip(ids, phones, strict=False) if i and p]
        now = self.clock()
        limited = False
        if listed:
            limited = any(now - t < 60 for t in self.status_lists)
            self.status_lists.append(now)
        for relay_id, _ in pairs:
            seen = self.status_by_id.setdefault(relay_id, [])
            seen.append(now)
            limited |= len([t for t in seen if now - t < 60]) > 5
        if limited or not pairs:
            self.status_errors += 1
            text = "too many requests" if limited else "parameters error"
            return self._answer("status", {"error": text, "error_code": 9 if limited else 1}, fmt)
        records: list[dict[str, object]] = []
        for relay_id, phone in pairs:
            status, changed = self.status_of(relay_id, phone)
            err = 0 if status < 3 or status == 4 else status
            record: dict[str, object] = {"status": status, "last_timestamp": int(changed), "err": err}
            if listed:
                record.update(id=relay_id, phone=phone)
            records.append(record)
        if listed:
            return self._answer("status", records, fmt)
        return self._answer("status", records[0], fmt)

    # ---- balance.php -----------------------------------------------------------------------
    async def _balance(self, request: web.Request) -> web.StreamResponse:
        form = await self._form(request)
        self.forms.append(("balance", form))
        if not self._auth(form):
            return self._answer("balance", {"error": "authorise error", "error_code": 2}, "3")
        return self._answer("balance", {"balance": str(self.balance)}, "3")

    # ---- for assertions --------------------------------------------------------------------
    def texts(self, phone: str) -> list[str]:
        return [s.text for s in self.sms if s.phone.lstrip("+") == phone.lstrip("+")]


def _phones(raw: str) -> list[str]:
    result = []
    for p in raw.replace(";", ",").split(","):
        p = p.strip()
        if not p:
            continue
        if not (fields.PHONE.fullmatch(p) or fields.GROUP.fullmatch(p)):
            raise ValueError(f"invalid phone {p!r}")
        result.append(p)
    return result


def _parts(text: str) -> int:
    ucs2 = any(ord(c) > 127 for c in text)
    single, multi = (70, 67) if ucs2 else (160, 153)
    if len(text) <= single:
        return 1
    return -(-len(text) // multi)
