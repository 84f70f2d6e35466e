"""The `funnelhouse` command line."""
