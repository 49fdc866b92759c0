"""`python -m relay` is the same as the `smsc-relay` command."""

from relay.cli.main import main

raise SystemExit(main())
