"""The relay's HTTP endpoints (/metrics, /health) read as a scraper reads them: one GET on a
connection of its own, and a sample's value out of the exposition text."""

from __future__ import annotations

import asyncio
import re


async def get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = await reader.read()
    writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


def value(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert m, f"{name} not in metrics"
    return float(m.group(1))
