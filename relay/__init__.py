"""smsc-relay: accept e-mail from legacy systems and relay it as SMS through SMS Centre."""

__version__ = "0.1.0"
