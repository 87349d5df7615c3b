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
        if change.entry_ids is not None:
            # An extra key: a server that predates it reads the row ids and ignores it.
            body["entry_ids"] = list(change.entry_ids)
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
        entry_ids = body.get("entry_ids")
        return SignalsRemoved(tuple(body["row_ids"]), None if entry_ids is None else tuple(entry_ids))
    if kind == "token_revoked":
        return TokenRevoked(bytes.fromhex(body["token_hash"]))
    if kind == "entry_changed":
        return EntryChanged(tuple(body["entry_ids"]))
    raise ValueError(f"unknown change kind {kind!r}")
