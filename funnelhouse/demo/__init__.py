"""`funnelhouse demo`: synthetic visitors sent through the HTTP API."""
