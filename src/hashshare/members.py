"""Member and token administration, shared by the AdminService and
``hashshare-server admin``."""

from __future__ import annotations

from collections.abc import Iterable

from .auth import hash_token, new_token, parse_roles
from .errors import InvalidArgument, NotFound
from .model import Member, Role, Token, TrustLevel
from .store.base import Store

MAX_NAME_LENGTH = 100


def _roles(names: Iterable[str], field: str) -> frozenset[Role]:
    try:
        roles = parse_roles(names)
    except ValueError as exc:
        raise InvalidArgument.field(field, str(exc)) from None
    return roles


def create_member(
    store: Store,
    name: str,
    role_names: Iterable[str],
    now: float,
    trust_level: TrustLevel = TrustLevel.PROVISIONAL,
) -> tuple[Member, Token, str]:
    """A new member and its first token (returned in clear, once); provisional unless told otherwise."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        raise InvalidArgument.field("name", f"must be 1-{MAX_NAME_LENGTH} printable characters")
    roles = _roles(role_names, "roles")
    if not roles:
        raise InvalidArgument.field("roles", "a member needs at least one role")
    member = store.create_member(name, roles, now, trust_level)
    token, secret = issue_token(store, member.member_id, (), now)
    return member, token, secret


def issue_token(store: Store, member_id: int, role_names: Iterable[str], now: float) -> tuple[Token, str]:
    """A new token with a subset of the member's roles (all of them when none are named)."""
    member = store.get_member(member_id)
    if member is None:
        raise NotFound(f"no member {member_id}")
    roles = _roles(role_names, "roles") or member.roles
    if not roles <= member.roles:
        extra = ", ".join(sorted(r.value for r in roles - member.roles))
        raise InvalidArgument.field("roles", f"the member does not hold: {extra}")
    secret = new_token()
    return store.create_token(member_id, hash_token(secret), roles, now), secret


def find_member(store: Store, name: str) -> Member:
    for member in store.list_members():
        if member.name == name:
            return member
    raise NotFound(f"no member called {name!r}")


def trust_level(name: str, field: str = "trust_level") -> TrustLevel:
    """A trust level from its name; InvalidArgument naming the valid ones otherwise."""
    try:
        return TrustLevel(name)
    except ValueError:
        valid = ", ".join(level.value for level in TrustLevel)
        raise InvalidArgument.field(field, f"unknown trust level {name!r} (valid: {valid})") from None
