"""Why the SMSC refused a bind: smpp34 reports every refusal as "bind timed out" (the status goes
to its Rust log only, docs/smpp-libraries.md), so after a failed bind the session asks once
more with smpplib's client, in a thread, and reads the bind_transceiver_resp's command_status:
the reason then says which (a wrong password, an unknown login, SMPP access off or this IP
not allowed) instead of naming every cause. Nothing is sent but the bind and, if it was taken
this time, its unbind."""

from __future__ import annotations

import contextlib
import ssl

from relay.provider_errors import smpp_status

# What each refusal means for the operator (SMPP 3.4 names, the provider's causes)
WHY = {
    0x0E: "the password is wrong (ESME_RINVPASWD): the provider's API password, 8 characters at most",
    0x0F: "the login is unknown (ESME_RINVSYSID): provider.login is the SMPP system_id",
    0x0D: "the bind was refused (ESME_RBINDFAIL): SMPP access off in the account's API settings, or"
    " this relay's IP not on its allowed list",
    0x05: "the session is bound already (ESME_RALYBND)",
    0x53: "the system_type was refused (ESME_RINVSYSTYP): provider.smpp.system_type",
}


def bind_status(
    host: str, port: int, system_id: str, password: str, *, system_type: str, tls: bool, timeout: float
) -> int | None:
    """The command_status the SMSC answers a bind with (0: taken), or None when it could not be
    asked (no connection, no answer in time)."""
    import smpplib.client  # only after a refused bind
    import smpplib.exceptions

    context = ssl.create_default_context() if tls else None
    client = smpplib.client.Client(host, port, timeout=timeout, ssl_context=context)
    try:
        client.connect()
        client.bind_transceiver(system_id=system_id, password=password, system_type=system_type)
    except smpplib.exceptions.PDUError as exc:
        return int(exc.args[1]) if len(exc.args) > 1 else None
    except (OSError, smpplib.exceptions.ConnectionError, ValueError):
        return None
    else:
        with contextlib.suppress(Exception):
            client.unbind()
        return 0
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()


def reason(status: int | None) -> str:
    """The operator's words for a bind's command_status ("" when it says nothing)."""
    if status is None or status == 0:
        return ""
    return WHY.get(status) or f"the SMSC refused the bind with {smpp_status(status).name}"
