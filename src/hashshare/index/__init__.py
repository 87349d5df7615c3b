"""In-memory matching indexes."""

from .base import Found, Hit, SubIndex
from .signal_index import SignalIndex

__all__ = ["Found", "Hit", "SignalIndex", "SubIndex"]
