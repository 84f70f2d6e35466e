"""Saved insights and dashboards of the console."""
