"""Pure parsers: bytes from the outside world -> typed values."""
