"""Enrichment of one event: time, user agent, campaign/referrer, IP."""
