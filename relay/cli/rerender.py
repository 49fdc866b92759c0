"""A retried message is rendered again from the mail it was made from, under the config in
force: a retry after fixing the config (a route's sender, phones, options) must not repeat the
old mistake. Only a message rendered under another config is rendered again; one that needs
what cannot be a retry of one request (several requests, storm alerts, a refusal) is not
retried, and says why, unless the operator asks for the stored request (`--as-stored`)."""

from __future__ import annotations

import dataclasses
import socket
from datetime import UTC, datetime

from relay import pipeline
from relay.config.schema import Config
from relay.errors import RelayError
from relay.formatters import provider
from relay.ids import new_id
from relay.spool.interface import Row, new_rows


class CannotRender(Exception):
    """The config in force would not make one request of this message's mail."""


def again(row: Row, cfg: Config) -> Row | None:
    """The message as the config in force renders it; None: no need (the same config) or no
    way (no mail kept: a digest of storm alerts, a big mail, a message from an older relay)."""
    if row.config == cfg.digest or row.inbound is None:
        return None
    now = datetime.now(UTC)
    hostname = cfg.listen.hostname or socket.getfqdn()
    try:
        rendered = pipeline.render(
            row.inbound, mail_from=row.mail_from, rcpt_tos=row.rcpt_tos, config=cfg, new_id=new_id,
            now=now, hostname=hostname, with_secret=False,
        )  # fmt: skip
    except RelayError as exc:
        raise CannotRender(f"the config in force refuses its mail: {exc.reason}") from None
    if rendered.alerts:
        raise CannotRender("the config in force makes it a storm route's alert, which a retry cannot hold")
    if len(rendered.requests) != 1:
        raise CannotRender(f"the config in force makes {len(rendered.requests)} requests of its mail")
    # The same id: replies, `queue show` and the provider's <id> go on naming this message.
    request = dataclasses.replace(rendered.requests[0], relay_id=row.id)
    mail = provider.build(request, cfg.provider, hostname=hostname, now=now, with_secret=False)
    (new,) = new_rows(
        [mail], mail_from=row.mail_from, inbound_id=row.inbound_id, state=row.state, attempts=row.attempts,
        now=row.created, inbound=row.inbound, config=cfg.digest,
    )  # fmt: skip
    return new


def changes(old: Row, new: Row) -> str:
    """What the new rendering changed, in a few words for the retry's summary."""
    said = [
        f"{name} {before} -> {after}"
        for name, before, after in (
            ("route", old.route, new.route),
            ("phones", ",".join(old.phones), ",".join(new.phones)),
            ("return path", old.upstream_from, new.upstream_from),
        )
        if before != after
    ]
    if old.texts != new.texts:
        said.append("text")
    if not said and old.message != new.message:
        said.append("the request's options")
    return "changed: " + ", ".join(said) if said else "the same request"
