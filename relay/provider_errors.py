"""What each provider error code means for the message and for the whole queue.

The codes and meanings are the provider's (SMTP page, and the HTTP page for the exact meaning).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Action(enum.Enum):
    FAIL = "fail"  # the request itself is wrong: failed, no retry, reason recorded
    PAUSE = "pause"  # every further request would fail too: stop delivery, keep the queue
    BACKOFF = "backoff"  # the provider blocks us for a while: hold the whole queue, then resume
    DUPLICATE = "duplicate"  # a repeat within a minute: recorded, not retried blindly


@dataclass(frozen=True, slots=True)
class Rule:
    action: Action
    meaning: str


ERRORS: dict[int, Rule] = {
    1: Rule(Action.FAIL, "error in parameters"),
    2: Rule(Action.PAUSE, "invalid login or password, or sent from an IP address not allowed"),
    3: Rule(Action.PAUSE, "insufficient funds on the account"),
    4: Rule(Action.BACKOFF, "IP address temporarily blocked after frequent errors"),
    5: Rule(Action.FAIL, "invalid date format"),
    6: Rule(Action.FAIL, "message denied (by text or by sender name)"),
    7: Rule(Action.FAIL, "invalid phone number format"),
    8: Rule(Action.FAIL, "the message cannot be delivered to this number"),
    9: Rule(Action.DUPLICATE, "identical request sent more than once within a minute"),
}
UNKNOWN = Rule(Action.FAIL, "unknown provider error")


def rule(code: int) -> Rule:
    return ERRORS.get(code, UNKNOWN)
