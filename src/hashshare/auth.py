"""Tokens and roles: who may call what.

Tokens are random secrets shown once; the store keeps only their SHA-256.
Verified tokens are cached for a short time, and a revocation reaches every
process through the change feed, so revoking takes effect at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable

from .errors import PermissionDenied, Unauthenticated
from .model import Principal, Role
from .store.base import Store

TOKEN_PREFIX = "hs_"
ANY_ROLE = frozenset(Role)

# Which roles may call each RPC: the one place permissions are decided.
PERMISSIONS: dict[str, frozenset[Role]] = {
    "/hashshare.v1.MatchService/Match": frozenset({Role.PLATFORM}),
    "/hashshare.v1.MatchService/MatchStream": frozenset({Role.PLATFORM}),
    "/hashshare.v1.MatchService/MatchBatchStream": frozenset({Role.PLATFORM}),
    "/hashshare.v1.SubmissionService/Submit": frozenset({Role.TRUST_SAFETY}),
    "/hashshare.v1.SubmissionService/SubmitBatch": frozenset({Role.TRUST_SAFETY}),
    "/hashshare.v1.SubmissionService/Retract": frozenset({Role.TRUST_SAFETY}),
    "/hashshare.v1.SubmissionService/GetEntry": frozenset(
        {Role.PLATFORM, Role.TRUST_SAFETY, Role.ADMIN, Role.AUTHORITY}
    ),
    "/hashshare.v1.SubmissionService/ListCategories": ANY_ROLE,
    "/hashshare.v1.ResearchService/GetSpread": frozenset({Role.RESEARCHER, Role.AUTHORITY, Role.ADMIN}),
    "/hashshare.v1.AdminService/CreateMember": frozenset({Role.ADMIN}),
    "/hashshare.v1.AdminService/ListMembers": frozenset({Role.ADMIN}),
    "/hashshare.v1.AdminService/IssueToken": frozenset({Role.ADMIN}),
    "/hashshare.v1.AdminService/RevokeToken": frozenset({Role.ADMIN}),
    "/hashshare.v1.AdminService/SetTrustLevel": frozenset({Role.ADMIN}),
    "/hashshare.v1.AdminService/SetContactPoints": frozenset({Role.ADMIN}),
    "/hashshare.v1.AdminService/ClearFlag": frozenset({Role.ADMIN}),
    "/hashshare.v1.AdminService/ListAuditEvents": frozenset({Role.ADMIN, Role.AUTHORITY}),
    "/hashshare.v1.MatchService/ReportAction": frozenset({Role.PLATFORM}),
    "/hashshare.v1.SubmissionService/GiveFeedback": frozenset({Role.TRUST_SAFETY, Role.PLATFORM}),
    "/hashshare.v1.SubmissionService/ReviewEntry": frozenset({Role.AUTHORITY, Role.ADMIN}),
    "/hashshare.v1.SubmissionService/AddToAllowList": frozenset({Role.AUTHORITY, Role.ADMIN}),
    "/hashshare.v1.SubmissionService/RemoveFromAllowList": frozenset({Role.AUTHORITY, Role.ADMIN}),
    "/hashshare.v1.SubmissionService/ListAllowList": frozenset({Role.AUTHORITY, Role.ADMIN, Role.TRUST_SAFETY}),
    "/hashshare.v1.NoticeService/FileNotice": frozenset({Role.AUTHORITY}),
    "/hashshare.v1.NoticeService/AnswerNotice": frozenset({Role.TRUST_SAFETY}),
    "/hashshare.v1.NoticeService/GetNotice": frozenset({Role.AUTHORITY, Role.TRUST_SAFETY, Role.ADMIN}),
    "/hashshare.v1.NoticeService/ListNotices": frozenset({Role.AUTHORITY, Role.TRUST_SAFETY, Role.ADMIN}),
    "/hashshare.v1.NoticeService/ListContactPoints": ANY_ROLE,
    "/hashshare.v1.ResearchService/GetSpreadSeries": frozenset({Role.RESEARCHER, Role.AUTHORITY, Role.ADMIN}),
    "/hashshare.v1.ResearchService/ListTopClusters": frozenset({Role.RESEARCHER, Role.AUTHORITY, Role.ADMIN}),
    "/hashshare.v1.ResearchService/GetPlatformStats": frozenset({Role.RESEARCHER, Role.AUTHORITY, Role.ADMIN}),
    "/hashshare.v1.ResearchService/GetCategoryStats": frozenset({Role.RESEARCHER, Role.AUTHORITY, Role.ADMIN}),
    "/hashshare.v1.ResearchService/GetNoticeStats": frozenset({Role.RESEARCHER, Role.AUTHORITY, Role.ADMIN}),
    "/hashshare.v1.ResearchService/GetFeedbackStats": frozenset({Role.RESEARCHER, Role.AUTHORITY, Role.ADMIN}),
}


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    """Roles from their names; ValueError naming the valid ones otherwise."""
    roles = set()
    for name in names:
        try:
            roles.add(Role(name))
        except ValueError:
            valid = ", ".join(r.value for r in Role)
            raise ValueError(f"unknown role {name!r} (valid: {valid})") from None
    return frozenset(roles)


class Authenticator:
    """Turns an ``authorization`` header into a Principal allowed to call a method."""

    def __init__(self, store: Store, cache_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[bytes, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("missing authorization metadata: send 'authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("authorization must be 'Bearer <token>'")
        token_hash = hash_token(token.strip())
        now = self._clock()
        with self._lock:
            cached = self._cache.get(token_hash)
        if cached is not None and cached[1] > now:
            return cached[0]
        found = self._store.find_token(token_hash)
        if found is None:
            raise Unauthenticated("unknown or revoked token")
        token_record, member = found
        principal = Principal(member.member_id, member.name, token_record.token_id, token_record.roles & member.roles)
        with self._lock:
            self._cache[token_hash] = (principal, now + self._cache_seconds)
        return principal

    def authorize(self, principal: Principal, method: str) -> None:
        allowed = PERMISSIONS.get(method)
        if allowed is None or not (principal.roles & allowed):
            needed = ", ".join(sorted(r.value for r in allowed or ()))
            raise PermissionDenied(f"{method} needs one of the roles: {needed or 'none'}")

    def forget(self, token_hash: bytes) -> None:
        """Drop a revoked token from the cache (called from the change feed)."""
        with self._lock:
            self._cache.pop(token_hash, None)
