"""The server's exception tree. The API layer maps it to gRPC status codes in
one place (hashshare.api.rpc); nothing else aborts a call.

HashshareError
├── InvalidArgument      malformed input; carries field violations
├── Unauthenticated      missing, unknown or revoked token
├── PermissionDenied     the caller's roles do not allow it
├── NotFound
├── AlreadyExists
├── FailedPrecondition
├── ResourceExhausted    overload or throttling
│   └── RateLimited      a member submitting faster than its quota
└── Unavailable          not ready yet, or the store is unreachable
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class HashshareError(Exception):
    """Base of every error a call can end with."""

    code = "UNKNOWN"
    reason = "ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(HashshareError):
    code = "INVALID_ARGUMENT"
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Sequence[FieldViolation], message: str = "") -> None:
        self.violations = tuple(violations)
        summary = "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(message or f"invalid request: {summary}")

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        return cls([FieldViolation(field, description)])


class Unauthenticated(HashshareError):
    code = "UNAUTHENTICATED"
    reason = "BAD_TOKEN"


class PermissionDenied(HashshareError):
    code = "PERMISSION_DENIED"
    reason = "ROLE_NOT_ALLOWED"


class NotFound(HashshareError):
    code = "NOT_FOUND"
    reason = "NOT_FOUND"


class AlreadyExists(HashshareError):
    code = "ALREADY_EXISTS"
    reason = "ALREADY_EXISTS"


class FailedPrecondition(HashshareError):
    code = "FAILED_PRECONDITION"
    reason = "FAILED_PRECONDITION"


class ResourceExhausted(HashshareError):
    code = "RESOURCE_EXHAUSTED"
    reason = "OVERLOADED"


class Unavailable(HashshareError):
    code = "UNAVAILABLE"
    reason = "UNAVAILABLE"


class RateLimited(ResourceExhausted):
    reason = "RATE_LIMITED"
