"""The feed's wire form: one JSON document per change, the same in every store."""

from __future__ import annotations

import json
from typing import Any

from ..model import Change, EntryChanged, IndexedSignal, SignalsAdded, SignalsRemoved, TokenRevoked


def encode(change: Change) -> bytes:
    if isinstance(change, SignalsAdded):
        body: dict[str, object] = {
            "kind": "signals_added",
            "rows": [[r.row_id, r.entry_id, r.type, r.version, r.value.hex(), r.variant] for r in change.rows],
        }
    elif isinstance(change, SignalsRemoved):
        body = {"kind": "signals_removed", "row_ids": list(change.row_ids)}
    elif isinstance(change, EntryChanged):
        body = {"kind": "entry_changed", "entry_ids": list(change.entry_ids)}
    else:
        body = {"kind": "token_revoked", "token_hash": change.token_hash.hex()}
    return json.dumps(body, separators=(",", ":")).encode()


def decode(payload: bytes | str) -> Change:
    return from_body(json.loads(payload))


def from_body(body: dict[str, Any]) -> Change:
    """A change from its JSON document, already parsed."""
    kind = body["kind"]
    if kind == "signals_added":
        return SignalsAdded(
            tuple(
                IndexedSignal(row[0], row[1], row[2], row[3], bytes.fromhex(row[4]), row[5] if len(row) > 5 else "")
                for row in body["rows"]
            )
        )
    if kind == "signals_removed":
        return SignalsRemoved(tuple(body["row_ids"]))
    if kind == "token_revoked":
        return TokenRevoked(bytes.fromhex(body["token_hash"]))
    if kind == "entry_changed":
        return EntryChanged(tuple(body["entry_ids"]))
    raise ValueError(f"unknown change kind {kind!r}")
