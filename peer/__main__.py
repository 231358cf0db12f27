"""`python -m peer`: see peer.cli.commands."""

from peer.cli.commands import main

raise SystemExit(main())
