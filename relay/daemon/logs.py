"""Logging: key=value lines on stderr, journald priorities under systemd, phone numbers masked."""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import ClassVar, TextIO


def setup_logging(level: str = "INFO", stream: TextIO | None = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        # journald adds the time; a <N> prefix keeps the level as syslog priority.
        handler.setFormatter(_JournalFormatter("%(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(MaskPhones())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiosmtpd logs every command and peer at INFO: too chatty, and it would log AUTH data. The
    # HTTP and database libraries log every request and connection at INFO in their own words
    # (`HTTP Request: POST ...`): the relay's own event= lines say what matters; their warnings
    # still come, through the same formatter and mask.
    for name in ("mail.log", "httpx", "httpcore", "psycopg", "psycopg.pool", "aiosmtplib"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler


class MaskPhones(logging.Filter):
    """Phone numbers in log lines at INFO and above keep their first 4 and last 2 digits.

    Only standalone digit runs of 7 to 15 (as in `<79991234567@sms...>`) match: relay ids,
    dates and error codes do not.
    """

    # Not after "queued as ": an upstream MTA's queue id is no phone number.
    PHONE = re.compile(r"(?<![\w.:-])(?<!queued as )(\+?\d{4})\d{1,9}(\d{2})(?![\w-])")

    RUN = re.compile(r"\d{7}")  # what every phone has: most lines have none, and skip the rest

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.INFO:
            text = record.getMessage()
            if self.RUN.search(text):
                text = self.PHONE.sub(
                    lambda m: m.group(1) + "*" * (len(m.group(0)) - len(m.group(1)) - 2) + m.group(2), text
                )
            # Formatted once: the formatter would format msg % args again.
            record.msg, record.args = text, ()
        return True


class _JournalFormatter(logging.Formatter):
    PRIORITY: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def format(self, record: logging.LogRecord) -> str:
        return f"<{self.PRIORITY.get(record.levelno, 6)}>{super().format(record)}"
