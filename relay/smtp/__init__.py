"""The SMTP listener: handler.py (aiosmtpd hooks), session.py (the protocol, limits, the open
sessions), auth.py (SMTP AUTH), intake.py (provider replies at the reply address)."""
