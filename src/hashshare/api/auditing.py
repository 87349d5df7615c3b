"""What the audit trail records of one call, read from its messages.

Only content-free facts are taken: ids that look like ids, enum names,
numbers, counts of repeated fields, role names and a category id. Free text
(reasons, comments, descriptions, references), signals and tokens are never
read, whatever RPC is audited, so RPCs added later are safe by default.
"""

from __future__ import annotations

import re

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from ..audit import event_time
from ..model import AuditDraft, IdKind, Principal, Role, format_id

# An id as the API spells them (ent_42, mem_3, ...): anything else is not copied.
_ID = re.compile(r"^[a-z]{2,5}_[0-9]{1,18}$")
_CATEGORY = re.compile(r"^[a-z0-9_.]{1,64}$")
_ROLES = frozenset(r.value for r in Role)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # as convert.check_request_id accepts
_NOT_TARGETS = frozenset({"request_id", "item_id"})
MAX_DETAIL = 500


def _first_id(message: Message, depth: int) -> str:
    nested = []
    for field, value in message.ListFields():
        if field.is_repeated:
            continue
        if field.type == FieldDescriptor.TYPE_STRING and field.name.endswith("_id") and field.name not in _NOT_TARGETS:
            if _ID.match(value):
                return str(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            nested.append(value)
    if depth > 0:
        for value in nested:
            if found := _first_id(value, depth - 1):
                return found
    return ""


def target_of(request: Message, response: Message | None) -> str:
    """The id the call acted on: from the answer when there is one (a new
    entry's id), else from the request."""
    if response is not None and (found := _first_id(response, 1)):
        return found
    return _first_id(request, 1)


def detail_of(request: Message, validated: bool) -> str:
    """Enum names, numbers, counts, role names and, once the call succeeded
    (so it is a known one), the category id."""
    parts = []
    for field, value in request.ListFields():
        if field.is_repeated:
            if field.name == "roles":
                parts.append("roles=" + ",".join(r for r in value if r in _ROLES))
            else:
                parts.append(f"{field.name}={len(value)}")
        elif field.type == FieldDescriptor.TYPE_ENUM:
            name = field.enum_type.values_by_number.get(value) if field.enum_type is not None else None
            parts.append(f"{field.name}={name.name if name is not None else value}")
        elif field.type == FieldDescriptor.TYPE_BOOL or field.cpp_type in (
            FieldDescriptor.CPPTYPE_INT32,
            FieldDescriptor.CPPTYPE_INT64,
            FieldDescriptor.CPPTYPE_UINT32,
            FieldDescriptor.CPPTYPE_UINT64,
            FieldDescriptor.CPPTYPE_DOUBLE,
            FieldDescriptor.CPPTYPE_FLOAT,
        ):
            parts.append(f"{field.name}={value}")
        elif field.name == "category" and validated and _CATEGORY.match(value):
            parts.append(f"category={value}")
    return " ".join(parts)[:MAX_DETAIL]


def draft_of(
    method: str,
    principal: Principal | None,
    request: Message,
    response: Message | None,
    result: str,
    at: float,
) -> AuditDraft:
    request_id = getattr(request, "request_id", "")
    return AuditDraft(
        at=event_time(at),
        member=format_id(IdKind.MEMBER, principal.member_id) if principal is not None else "",
        roles=tuple(sorted(r.value for r in principal.roles)) if principal is not None else (),
        method=method,
        request_id=request_id if isinstance(request_id, str) and _REQUEST_ID.match(request_id) else "",
        target=target_of(request, response),
        result=result,
        detail=detail_of(request, validated=result == "OK"),
    )
