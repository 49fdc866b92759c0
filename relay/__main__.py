"""`python -m relay` is the same as the `smsc-relay` command."""

from relay.cli import main

raise SystemExit(main())
