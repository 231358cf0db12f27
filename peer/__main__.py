"""`python -m peer`: see peer.cli."""

from peer.cli import main

raise SystemExit(main())
