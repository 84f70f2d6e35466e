"""Composing the roles into running processes (`up`) and finding a running instance."""
