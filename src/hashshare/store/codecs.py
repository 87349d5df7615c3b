"""JSON forms of the directory, notice and audit records, shared by the stores."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hashshare_client import LegalBasis, Signal

from ..model import AuditDraft, AuditEvent, ContactPoint, Notice, NoticeDraft, NoticeState


def contact_points_json(points: Sequence[ContactPoint]) -> str:
    return json.dumps([[p.name, p.role, p.email, p.phone] for p in points], ensure_ascii=False)


def contact_points_from_json(text: str | bytes) -> tuple[ContactPoint, ...]:
    return tuple(ContactPoint(*fields) for fields in json.loads(text))


def notice_json(notice: Notice) -> str:
    draft = notice.draft
    return json.dumps(
        {
            "authority_id": notice.authority_id,
            "platform_id": draft.platform_id,
            "content_reference": draft.content_reference,
            "signals": [[s.type, s.version, s.value.hex(), s.quality, s.variant] for s in draft.signals],
            "category": draft.category,
            "legal_basis": draft.legal_basis.value,
            "legal_reference": draft.legal_reference,
            "description": draft.description,
            "filed_at": float(notice.filed_at),
            "routed_to": json.loads(contact_points_json(notice.routed_to)),
            "state": notice.state.value,
            "decided_at": notice.decided_at,
            "decided_by": notice.decided_by,
            "decision_reason": notice.decision_reason,
            "entry_id": notice.entry_id,
        },
        ensure_ascii=False,
    )


def notice_from_json(notice_id: int, text: str | bytes) -> Notice:
    record: dict[str, Any] = json.loads(text)
    draft = NoticeDraft(
        platform_id=record["platform_id"],
        content_reference=record["content_reference"],
        signals=tuple(
            Signal(kind, version, bytes.fromhex(value), quality, variant)
            for kind, version, value, quality, variant in record["signals"]
        ),
        category=record["category"],
        legal_basis=LegalBasis(record["legal_basis"]),
        legal_reference=record["legal_reference"],
        description=record["description"],
    )
    return Notice(
        notice_id=notice_id,
        authority_id=record["authority_id"],
        draft=draft,
        filed_at=record["filed_at"],
        routed_to=tuple(ContactPoint(*fields) for fields in record["routed_to"]),
        state=NoticeState(record["state"]),
        decided_at=record["decided_at"],
        decided_by=record["decided_by"],
        decision_reason=record["decision_reason"],
        entry_id=record["entry_id"],
    )


def audit_json(event: AuditEvent) -> str:
    draft = event.draft
    return json.dumps(
        {
            "sequence": event.sequence,
            "at": float(draft.at),
            "member": draft.member,
            "roles": list(draft.roles),
            "method": draft.method,
            "request_id": draft.request_id,
            "target": draft.target,
            "result": draft.result,
            "detail": draft.detail,
            "previous_hash": event.previous_hash,
            "hash": event.hash,
        },
        ensure_ascii=False,
    )


def audit_from_json(text: str | bytes) -> AuditEvent:
    r: dict[str, Any] = json.loads(text)
    draft = AuditDraft(
        r["at"], r["member"], tuple(r["roles"]), r["method"], r["request_id"], r["target"], r["result"], r["detail"]
    )
    return AuditEvent(r["sequence"], draft, r["previous_hash"], r["hash"])
