"""Between the listener and the spool/delivery pair: what becomes of a rendered mail."""
