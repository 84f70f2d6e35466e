"""`python -m funnelhouse.cli`: the same as the `funnelhouse` command."""

from funnelhouse.cli.main import main

raise SystemExit(main())
