"""What each provider error code means for the message and for the whole queue.

The codes and meanings are the provider's (SMTP page, and the HTTP page for the exact meaning).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol


class Action(enum.Enum):
    FAIL = "fail"  # the request itself is wrong: failed, no retry, reason recorded
    PAUSE = "pause"  # every further request would fail too: stop delivery, keep the queue
    BACKOFF = "backoff"  # the provider blocks us for a while: hold the whole queue, then resume
    DUPLICATE = "duplicate"  # a repeat within a minute: recorded, not retried blindly


@dataclass(frozen=True, slots=True)
class Rule:
    action: Action
    meaning: str
    # The config may be its cause (the login, the password, the way out): a relay started
    # with other settings than those that met it asks the provider again (account_cause).
    config_cause: bool = False


ERRORS: dict[int, Rule] = {
    1: Rule(Action.FAIL, "error in parameters"),
    2: Rule(Action.PAUSE, "invalid login or password, or sent from an IP address not allowed", True),
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


class PauseLengths(Protocol):
    @property
    def pause_interval(self) -> float: ...
    @property
    def block_backoff(self) -> float: ...


class Account(Protocol):
    @property
    def login(self) -> str: ...
    @property
    def hosts(self) -> tuple[str, ...]: ...
    @property
    def port(self) -> int: ...
    @property
    def api_urls(self) -> tuple[str, ...]: ...


def account_cause(provider: Account, password: str, salt: bytes) -> str:
    """What a pause for the account (ERROR 2) depends on, as a digest kept with the pause: the
    login, the password and the way out (the provider's hosts, its API). Never the password:
    a slow key derivation, salted with the queue's own key, so that the spool gives no cheap
    way to guess it."""
    material = "\0".join((provider.login, password, *provider.hosts, str(provider.port), *provider.api_urls))
    return _derive(material.encode("utf-8"), salt)


@lru_cache(maxsize=8)
def _derive(material: bytes, salt: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", material, salt, 200_000).hex()[:32]


def pause_length(provider: PauseLengths) -> Callable[[Rule], float]:
    """How long an error holds the whole queue: block_backoff for 4, pause_interval for 2/3."""
    return lambda rule: provider.block_backoff if rule.action is Action.BACKOFF else provider.pause_interval


# ---- delivery statuses (status.php) ------------------------------------------------------
# The provider's status codes of one SMS to one phone (http-api-notes.md). 1, 2, 4 are
# delivered; 3 and every code from 20 on are final failures; -1 and 0 are on their way; -3 is
# "not found", which right after sending means "not registered yet", never final by itself.
STATUSES: dict[int, str] = {
    -3: "not found",
    -2: "stopped",
    -1: "waiting to be sent",
    0: "handed to the operator",
    1: "delivered",
    2: "read",
    3: "expired",
    4: "delivered, link clicked",
    20: "cannot be delivered",
    22: "invalid number",
    23: "prohibited",
    24: "insufficient funds",
    25: "unavailable number",
}
DELIVERED = frozenset({1, 2, 4})
NOT_FOUND = -3


def status_final(code: int) -> bool:
    return code in DELIVERED or code == 3 or code >= 20


def status_failed(code: int) -> bool:
    return code == 3 or code >= 20


def status_meaning(code: int) -> str:
    if code in STATUSES:
        return STATUSES[code]
    return "undelivered" if code >= 20 else "unknown status"


# ---- SMPP command_status (issue 24) ----------------------------------------------------------
# A submit_sm_resp's status, or a bind's, read through the provider's error table above where it
# means the same, so an SMPP answer meets the same policy as an HTTP or a mail one (SMPP 3.4
# section 5.1.3 names the codes; the provider's pages say nothing more). Two answers are the
# session's, not the message's: the SMSC is busy (throttled, queue full), so the part was not
# taken and goes again after a pause, which slows the session; a system error or a generic_nack
# may have come after the part was taken: uncertain, asked about (status.php) before a resend.
class SmppAnswer(enum.Enum):
    PROVIDER = "provider"  # the provider error `code` below: its Rule decides
    THROTTLE = "throttle"  # not taken: send again after a pause; the session slows down
    UNCERTAIN = "uncertain"  # maybe taken: ask before a resend
    RETRY = "retry"  # not taken, a passing fault of the SMSC: retried with backoff


@dataclass(frozen=True, slots=True)
class SmppStatus:
    answer: SmppAnswer
    name: str  # the SMPP 3.4 name, for the log and `queue show`
    code: int = 0  # with PROVIDER: the provider error it is


SMPP_STATUSES: dict[int, SmppStatus] = {
    0x01: SmppStatus(SmppAnswer.PROVIDER, "ESME_RINVMSGLEN", 1),
    0x08: SmppStatus(SmppAnswer.UNCERTAIN, "ESME_RSYSERR"),
    0x0A: SmppStatus(SmppAnswer.PROVIDER, "ESME_RINVSRCADR", 6),  # the sender name refused
    0x0B: SmppStatus(SmppAnswer.PROVIDER, "ESME_RINVDSTADR", 7),  # the phone number
    0x0D: SmppStatus(SmppAnswer.PROVIDER, "ESME_RBINDFAIL", 2),  # SMPP access off, or this IP not allowed
    0x0E: SmppStatus(SmppAnswer.PROVIDER, "ESME_RINVPASWD", 2),
    0x0F: SmppStatus(SmppAnswer.PROVIDER, "ESME_RINVSYSID", 2),
    0x14: SmppStatus(SmppAnswer.THROTTLE, "ESME_RMSGQFUL"),
    0x45: SmppStatus(SmppAnswer.RETRY, "ESME_RSUBMITFAIL"),
    0x58: SmppStatus(SmppAnswer.THROTTLE, "ESME_RTHROTTLED"),
    0x61: SmppStatus(SmppAnswer.PROVIDER, "ESME_RINVSCHED", 5),
    0x62: SmppStatus(SmppAnswer.PROVIDER, "ESME_RINVEXPIRY", 5),
}


def smpp_status(status: int) -> SmppStatus:
    """What a non-zero command_status means here. One not in the table (vendor codes from 0x400
    on, the rest of SMPP 3.4's) fails the message with its number, as an unknown provider
    error does: retrying blindly what the SMSC refused for a reason we cannot read helps no one."""
    return SMPP_STATUSES.get(status, SmppStatus(SmppAnswer.PROVIDER, f"command_status 0x{status:08X}", -1))


def smpp_rule(status: SmppStatus) -> Rule:
    """The provider's Rule for a PROVIDER answer (an unknown status: UNKNOWN)."""
    return rule(status.code) if status.code > 0 else UNKNOWN
