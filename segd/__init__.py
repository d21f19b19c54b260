"""segd: an event-sourced, actor-based user segmentation daemon."""

__version__ = "0.1.0"
