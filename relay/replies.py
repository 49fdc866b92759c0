"""Every SMTP reply the relay sends, as named constants.

Naming rule (checked by tests/test_replies.py): ``S<code>_<WHAT>``, the three digits equal the
reply code, and the enhanced status code (RFC 3463) starts with the same class digit.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    enhanced: str
    text: str

    def with_text(self, text: str) -> Reply:
        return Reply(self.code, self.enhanced, text)

    def __str__(self) -> str:
        # A reply is one line: a newline here would let text smuggle a second reply.
        text = " ".join(self.text.split())
        return f"{self.code} {self.enhanced} {text}"


S250_ACCEPTED = Reply(250, "2.0.0", "queued as")
S250_OK = Reply(250, "2.1.5", "OK")
S421_TOO_MANY_CONNECTIONS = Reply(421, "4.7.0", "too many connections, try again later")
S421_TOO_MANY_FROM_YOU = Reply(421, "4.7.0", "too many connections from your address, try again later")
S421_MAKING_ROOM = Reply(421, "4.7.0", "closing an idle connection to make room, try again later")
S421_NO_MAIL = Reply(421, "4.4.2", "no MAIL within the time allowed to clients outside the relay's networks")
S421_TOO_MANY_RSET = Reply(421, "4.7.0", "RSET sent too many times without a mail")
S421_SHUTTING_DOWN = Reply(421, "4.3.2", "service shutting down, try again later")
S450_REPLY_RATE = Reply(
    450, "4.7.1", "too many mails to the reply address from your address; try again later"
)
S451_INTERNAL = Reply(451, "4.3.0", "internal error, message not accepted; try again later")
S451_SPOOL = Reply(451, "4.3.0", "spool unavailable, message not accepted; try again later")
S452_TOO_MANY_RECIPIENTS = Reply(452, "4.5.3", "too many recipients")
S530_AUTH_REQUIRED = Reply(530, "5.7.0", "authentication required")
S550_NO_ROUTE = Reply(550, "5.1.1", "no route for")
S552_TOO_BIG = Reply(552, "5.3.4", "message too big")
S553_BAD_ADDRESS = Reply(553, "5.1.3", "bad destination mailbox address syntax")
S554_NOT_ALLOWED = Reply(554, "5.7.1", "client host rejected: access denied")
S554_NO_CONTENT = Reply(554, "5.6.0", "nothing usable to send")
S554_LOOP = Reply(554, "5.4.6", "routing loop detected")
