"""Scheduled and on-demand jobs: exports, replay of dead letters, the scheduler."""
