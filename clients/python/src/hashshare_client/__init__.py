"""hashshare_client: the platform SDK of hashshare.

Signals are computed locally (``hashshare_client.signals``); only hashes are
sent to the server.
"""

from . import signal_types, signals
from ._async_client import AsyncClient
from ._client import Client
from ._exceptions import (
    AlreadyExistsError,
    ApiError,
    DeadlineExceededError,
    EmptyTextError,
    FailedPreconditionError,
    FieldViolation,
    HashshareError,
    ImageTooLargeError,
    InvalidArgumentError,
    InvalidImageError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    SignalError,
    UnauthenticatedError,
    UnavailableError,
)
from ._models import (
    Category,
    DailyCount,
    DiscoveryMethod,
    Entry,
    ItemError,
    LegalBasis,
    MatchedEntry,
    MatchResult,
    PlatformSpread,
    Removal,
    RetractResult,
    SignalMatch,
    SkippedSignal,
    Spread,
    Submission,
    SubmitResult,
    Verdict,
)
from .protocol import Threshold
from .signals import Signal

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "ApiError",
    "AsyncClient",
    "Category",
    "Client",
    "DailyCount",
    "DeadlineExceededError",
    "DiscoveryMethod",
    "EmptyTextError",
    "Entry",
    "FailedPreconditionError",
    "FieldViolation",
    "HashshareError",
    "ImageTooLargeError",
    "InvalidArgumentError",
    "InvalidImageError",
    "ItemError",
    "LegalBasis",
    "MatchResult",
    "MatchedEntry",
    "NotFoundError",
    "PermissionDeniedError",
    "PlatformSpread",
    "Removal",
    "ResourceExhaustedError",
    "RetractResult",
    "Signal",
    "SignalError",
    "SignalMatch",
    "SkippedSignal",
    "Spread",
    "SubmitResult",
    "Submission",
    "Threshold",
    "UnauthenticatedError",
    "UnavailableError",
    "Verdict",
    "__version__",
    "signal_types",
    "signals",
]
