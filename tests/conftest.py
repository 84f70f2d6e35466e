"""Shared pytest fixtures: settings on a temp data folder, a running app on a free port."""
