"""Every exception the SDK raises.

HashshareError
├── SignalError                 the input could not be turned into signals
│   ├── InvalidImageError       unreadable, truncated or unsupported image
│   ├── ImageTooLargeError      more pixels than the limit (decompression bomb)
│   └── EmptyTextError          nothing left to hash after normalisation
└── ApiError                    the server refused or failed a call
    ├── InvalidArgumentError    malformed request; see ``field_violations``
    ├── UnauthenticatedError    missing, unknown or revoked token
    ├── PermissionDeniedError   the token's roles do not allow the call
    ├── NotFoundError
    ├── AlreadyExistsError
    ├── FailedPreconditionError
    ├── ResourceExhaustedError  overloaded or throttled; retry later
    ├── UnavailableError        server down or not ready; retried for you
    └── DeadlineExceededError
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AlreadyExistsError",
    "ApiError",
    "DeadlineExceededError",
    "EmptyTextError",
    "FailedPreconditionError",
    "FieldViolation",
    "HashshareError",
    "ImageTooLargeError",
    "InvalidArgumentError",
    "InvalidImageError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "SignalError",
    "UnauthenticatedError",
    "UnavailableError",
]


class HashshareError(Exception):
    """Base of every error raised by hashshare_client."""


class SignalError(HashshareError, ValueError):
    """The input could not be turned into signals."""


class InvalidImageError(SignalError):
    """The image is unreadable, truncated or in an unsupported format."""


class ImageTooLargeError(SignalError):
    """The image has more pixels than allowed; refused before decoding."""


class EmptyTextError(SignalError):
    """The text is empty, or nothing is left of it after normalisation."""


@dataclass(frozen=True)
class FieldViolation:
    """One malformed field of a refused request."""

    field: str
    description: str


class ApiError(HashshareError):
    """The server refused or failed a call."""

    code: str = "UNKNOWN"

    def __init__(self, message: str, field_violations: tuple[FieldViolation, ...] = (), reason: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field_violations = field_violations
        self.reason = reason

    def __str__(self) -> str:
        if not self.field_violations:
            return f"{self.code}: {self.message}"
        fields = "; ".join(f"{v.field}: {v.description}" for v in self.field_violations)
        return f"{self.code}: {self.message} ({fields})"


class InvalidArgumentError(ApiError):
    code = "INVALID_ARGUMENT"


class UnauthenticatedError(ApiError):
    code = "UNAUTHENTICATED"


class PermissionDeniedError(ApiError):
    code = "PERMISSION_DENIED"


class NotFoundError(ApiError):
    code = "NOT_FOUND"


class AlreadyExistsError(ApiError):
    code = "ALREADY_EXISTS"


class FailedPreconditionError(ApiError):
    code = "FAILED_PRECONDITION"


class ResourceExhaustedError(ApiError):
    code = "RESOURCE_EXHAUSTED"


class UnavailableError(ApiError):
    code = "UNAVAILABLE"


class DeadlineExceededError(ApiError):
    code = "DEADLINE_EXCEEDED"


API_ERRORS: dict[str, type[ApiError]] = {
    cls.code: cls
    for cls in (
        InvalidArgumentError,
        UnauthenticatedError,
        PermissionDeniedError,
        NotFoundError,
        AlreadyExistsError,
        FailedPreconditionError,
        ResourceExhaustedError,
        UnavailableError,
        DeadlineExceededError,
    )
}
