"""Delivery: workers.py takes spooled rows to a transport.py `Transport` (smtp.py, outbox.py),
retry.py decides when to try again; notices.py tells senders of failures; dkim.py signs."""
