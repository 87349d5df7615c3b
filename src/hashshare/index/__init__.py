"""In-memory matching indexes."""

from .base import Hit, SubIndex
from .signal_index import SignalIndex

__all__ = ["Hit", "SignalIndex", "SubIndex"]
