"""Test oracles and data helpers; not part of the shipped package."""
