"""What the search index raises when it cannot answer or cannot be written to."""
from __future__ import annotations

__all__ = ["IndexBusy", "IndexUnavailable"]


class IndexUnavailable(Exception):
    """The index is missing, damaged or cannot be opened; it needs a rebuild."""


class IndexBusy(IndexUnavailable):
    """Another process kept the index locked for writing for too long."""
