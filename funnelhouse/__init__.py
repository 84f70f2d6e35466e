"""What the pieces share: settings, the CLI, `funnelhouse up`, models, analyses, exports."""

__version__ = "0.1.0"
