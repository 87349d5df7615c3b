"""Compact arrays of the indexes give back exactly what was packed."""

from __future__ import annotations

import numpy as np
import pytest

from hashshare.index.packed import BlockPacked, Flags, Packed, bits_for


@pytest.mark.parametrize("bits", [1, 7, 20, 24, 32])
def test_packed_values_come_back(bits: int) -> None:
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 2**bits, size=3001, dtype=np.int64)
    packed = Packed.pack(values, bits)
    assert np.array_equal(packed.unpack(), values)
    picked = rng.integers(0, len(values), size=500)
    assert np.array_equal(packed.take(picked), values[picked])
    assert packed.nbytes < len(values) * bits / 8 + 16
    assert np.array_equal(Packed(packed.data, bits, len(values)).unpack(0, 10), values[:10])
    with pytest.raises(ValueError):
        Packed.pack(values + 2**bits, bits)
    with pytest.raises(ValueError):
        Packed(packed.data[:-1], bits, len(values))
    assert bits_for(1) == 1 and bits_for(2**bits) == bits and bits_for(2**bits + 1) == bits + 1


@pytest.mark.parametrize("count", [0, 1, 63, 64, 65, 10_000])
def test_monotone_values_come_back_with_blocks_as_wide_as_they_need(count: int) -> None:
    rng = np.random.default_rng(count)
    steps = rng.poisson(0.8, size=count)
    if count > 100:
        steps[count // 2] = 70_000  # one huge bucket: only its block needs wide excesses
    values = np.cumsum(steps).astype(np.int64)
    packed = BlockPacked.pack(values)
    assert np.array_equal(packed.take(np.arange(count)), values)
    again = BlockPacked(packed.data, packed.widths, packed.bases, count)
    assert np.array_equal(again.take(np.arange(count)[::-1]), values[::-1])
    if count > 100:
        assert int(packed.widths.max()) == 17 and float(np.median(packed.widths)) <= 7
    with pytest.raises(ValueError):
        BlockPacked(packed.data[:-1], packed.widths, packed.bases, count)


@pytest.mark.parametrize("widest", [9, 28, 29, 32])
def test_block_packed_pairs_are_neighbours_across_blocks_and_wide_ones(widest: int) -> None:
    # Bucket offsets are read as (start, end) pairs, mostly from one 8-byte window; a pair
    # straddling two blocks, or a block wider than 28 bits, is read apart.
    rng = np.random.default_rng(widest)
    steps = rng.integers(0, 4, size=2000)
    steps[700] = 2 ** (widest - 1)  # one block as wide as ``widest`` bits
    values = np.cumsum(steps).astype(np.int64)
    packed = BlockPacked.pack(values)
    assert int(packed.widths.max()) == widest
    picked = np.concatenate([rng.integers(0, len(values) - 1, size=500), np.arange(63, len(values) - 1, 64), [0]])
    first, second = packed.take_pairs(picked)
    assert np.array_equal(first, values[picked]) and np.array_equal(second, values[picked + 1])


def test_flags_clear_one_row_at_a_time() -> None:
    flags = Flags(21)
    assert flags.nbytes == 3 and bool(flags.mask().all()) and len(flags) == 21
    for row in (0, 7, 8, 20):
        flags.clear(row)
    assert not flags[7] and flags[6] and not flags[20]
    assert flags[np.array([0, 1, 8, 9])].tolist() == [False, True, False, True]
    copy = flags.copy()
    flags.clear(1)
    assert copy[1] and not flags[1]
    assert np.flatnonzero(~copy.mask()).tolist() == [0, 7, 8, 20]


def test_block_packed_ids_are_found_and_blocks_spanning_2_to_the_32_refused() -> None:
    ids = np.cumsum(np.random.default_rng(3).integers(1, 9, size=1000)) + 2**40
    packed = BlockPacked.pack(ids)
    assert packed.nbytes < 2 * len(ids)  # about 4 bits an id here, plus the blocks' bookkeeping
    for position in (0, 63, 64, 500, 999):
        assert packed.search_sorted(ids[position : position + 1]).tolist() == [position]
    assert packed.search_sorted(ids).tolist() == list(range(len(ids)))
    assert packed.search_sorted(np.array([ids[0] - 1, ids[-1] + 1])).tolist() == [-1, -1]
    before_gaps = ids[:-1][ids[1:] - ids[:-1] > 1]  # v + 1 is absent for each of these
    assert len(before_gaps) > 50
    assert (packed.search_sorted(before_gaps + 1) == -1).all()
    # Found and absent values mixed, in any order, the last block's tail included.
    mixed = np.concatenate([before_gaps + 1, ids[::-7], [ids[-1], ids[-1] + 5]])
    expected = [int(np.searchsorted(ids, v)) if v in set(ids.tolist()) else -1 for v in mixed.tolist()]
    assert packed.search_sorted(mixed).tolist() == expected
    with pytest.raises(ValueError):
        BlockPacked.pack(np.array([0, 2**32], dtype=np.int64))


def test_block_packed_pairs_of_values_that_go_down_inside_a_block() -> None:
    # Entry ids are only nearly ascending: a block's first value need not be its least, so
    # the neighbour of a block's last value is decoded, not taken from the next block's base.
    rng = np.random.default_rng(5)
    values = np.cumsum(rng.integers(0, 4, size=1000)).astype(np.int64)
    values[64::64] += 3  # each block's first value above its next
    packed = BlockPacked.pack(values)
    assert not np.array_equal(packed.take(np.arange(0, 1000, 64)), packed.bases)
    picked = np.concatenate([np.arange(63, 999, 64), rng.integers(0, 999, size=200)])
    first, second = packed.take_pairs(picked)
    assert np.array_equal(first, values[picked]) and np.array_equal(second, values[picked + 1])
