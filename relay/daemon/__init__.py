"""The daemon: main.py wires the parts and runs them (`smsc-relay serve`); logs, health, the
metrics endpoint, systemd notifications and the storm runner beside it."""
