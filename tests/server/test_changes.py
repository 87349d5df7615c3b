"""The feed's wire form is the same in every store: each change decodes to itself."""

from __future__ import annotations

import json

import pytest

from hashshare.model import Change, EntryChanged, IndexedSignal, SignalsAdded, SignalsRemoved, TokenRevoked
from hashshare.store import changes


@pytest.mark.parametrize(
    "change",
    [
        SignalsAdded((IndexedSignal(7, 3, "pdq", "pdq1.p2", bytes(range(32)), "trimmed"),)),
        SignalsRemoved((7, 8)),
        TokenRevoked(b"\x01" * 32),
        EntryChanged((3, 5)),
        # The allow-list's rows: negative row and item ids (model.allowed_index_id).
        SignalsAdded((IndexedSignal(-4, -2, "image/pdq", "pdq1.p2", bytes(range(32)), ""),)),
        SignalsRemoved((-4, -5)),
        SignalsRemoved((7, 8), (3,)),
        SignalsRemoved((-4,), ()),
    ],
)
def test_every_change_decodes_to_itself(change: Change) -> None:
    assert changes.decode(changes.encode(change)) == change


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown change kind"):
        changes.decode(b'{"kind":"entries_exploded"}')


def test_a_removal_written_before_entries_were_named_reads_as_unknown_entries() -> None:
    # Feeds outlive upgrades: such a removal must make listeners forget every entry.
    assert changes.decode(b'{"kind":"signals_removed","row_ids":[7,8]}') == SignalsRemoved((7, 8), None)


def test_a_removal_naming_entries_keeps_the_row_ids_where_older_servers_read_them() -> None:
    body = json.loads(changes.encode(SignalsRemoved((7, 8), (3,))))
    assert body["kind"] == "signals_removed" and body["row_ids"] == [7, 8] and body["entry_ids"] == [3]
