"""The feed's wire form is the same in every store: each change decodes to itself."""

from __future__ import annotations

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
    ],
)
def test_every_change_decodes_to_itself(change: Change) -> None:
    assert changes.decode(changes.encode(change)) == change


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown change kind"):
        changes.decode(b'{"kind":"entries_exploded"}')
