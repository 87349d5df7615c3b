"""Compact integer arrays for the indexes, each read by a vectorised gather.

- ``Packed``: unsigned integers of ``bits`` bits each. Bucket tables hold one row
  position per row per table, and a position needs only ``ceil(log2(rows))``
  bits (24 at 10M rows, 20 at 1M) where a uint32 spends 32: at a dozen tables
  that is most of an index's bytes per hash.
- ``BlockPacked``: integers as a base per block of 64 plus a narrow excess
  (bucket offsets, a segment's row and entry ids).
- ``Flags``: a bit a row (tombstones).

Values are laid end to end, little-endian, in a byte buffer; a gather reads
the 8 bytes holding each value through an unaligned view (stride 1 byte) and
shifts it out, so it costs a few vector operations, not a Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_BITS = 32
_PAD = 8  # bytes past the last value, so that every value's 8-byte window is in the buffer
_PACK_BLOCK = 1 << 20  # values packed per step (a multiple of 8: each step fills whole bytes)
_BLOCK_SHIFT = 6  # BlockPacked's blocks of 64 values
_MASKS = (np.uint64(1) << np.arange(MAX_BITS + 1, dtype=np.uint64)) - np.uint64(1)  # by width


def bits_for(limit: int) -> int:
    """Bits that hold every value in ``[0, limit)`` (at least 1)."""
    return max(1, (limit - 1).bit_length())


def packed_size(count: int, bits: int) -> int:
    """Bytes of the buffer of ``count`` values of ``bits`` bits."""
    return (count * bits + 7) // 8 + _PAD


@dataclass(frozen=True)
class Packed:
    """``len`` values of ``bits`` bits in ``data`` (uint8, ``packed_size`` bytes)."""

    data: np.ndarray
    bits: int
    count: int
    _windows: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 1 <= self.bits <= MAX_BITS:
            raise ValueError(f"{self.bits} bits per value: 1 to {MAX_BITS} are supported")
        if self.data.dtype != np.uint8 or self.data.ndim != 1 or len(self.data) != packed_size(self.count, self.bits):
            raise ValueError(f"a buffer of {self.count} values of {self.bits} bits is not {self.data.shape} bytes")
        # The little-endian uint64 starting at every byte: value i lies in the one at byte
        # (i * bits) // 8, shifted by (i * bits) % 8 <= 7 bits, and 7 + 32 bits fit in 64.
        windows = np.ndarray(shape=(len(self.data) - 7,), dtype="<u8", buffer=self.data, strides=(1,))
        object.__setattr__(self, "_windows", windows)

    @classmethod
    def pack(cls, values: np.ndarray, bits: int) -> Packed:
        """``values`` (non-negative integers below ``2**bits``) packed."""
        count = len(values)
        data = np.zeros(packed_size(count, bits), dtype=np.uint8)
        if count and (int(values.min()) < 0 or int(values.max()) >> bits):
            raise ValueError(f"a value does not fit in {bits} unsigned bits")
        for start in range(0, count, _PACK_BLOCK):
            block = np.ascontiguousarray(values[start : start + _PACK_BLOCK], dtype="<u4")
            # Each value's low ``bits`` bits, lowest first, end to end, then back into bytes.
            spread = np.unpackbits(block.view(np.uint8).reshape(-1, 4), axis=1, bitorder="little")[:, :bits]
            packed = np.packbits(spread.ravel(), bitorder="little")
            first = start * bits // 8  # whole bytes: start is a multiple of 8
            data[first : first + len(packed)] = packed
        return cls(data, bits, count)

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def take(self, indexes: np.ndarray) -> np.ndarray:
        """The values at ``indexes`` (integers in ``[0, len)``), as int64."""
        bit = np.asarray(indexes, dtype=np.int64) * self.bits
        windows = self._windows[bit >> 3]
        windows >>= (bit & 7).astype(np.uint64)
        windows &= np.uint64((1 << self.bits) - 1)
        values: np.ndarray = windows.view(np.int64)
        return values

    def unpack(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Values ``[start, stop)`` as int64."""
        stop = self.count if stop is None else stop
        return self.take(np.arange(start, stop, dtype=np.int64))


class Flags:
    """``count`` booleans, eight to a byte, all set at first (a segment's live rows).

    ``flags[i]`` and ``flags[array]`` read like a bool array. ``clear`` rewrites one byte,
    so a reader that does not lock sees the byte before or after, both consistent."""

    def __init__(self, count: int, data: np.ndarray | None = None) -> None:
        self.count = count
        self.data = np.packbits(np.ones(count, dtype=bool), bitorder="little") if data is None else data

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int | np.integer):
            return bool((int(self.data[int(index) >> 3]) >> (int(index) & 7)) & 1)
        index = np.asarray(index, dtype=np.int64)
        bits: np.ndarray = (self.data[index >> 3] >> (index & 7).astype(np.uint8)) & np.uint8(1)
        return bits.astype(bool)

    def clear(self, index: int) -> None:
        self.data[index >> 3] &= np.uint8(0xFF ^ (1 << (index & 7)))

    def mask(self) -> np.ndarray:
        """The flags as a bool array."""
        mask: np.ndarray = np.unpackbits(self.data, count=self.count, bitorder="little").astype(bool)
        return mask

    def copy(self) -> Flags:
        return Flags(self.count, self.data.copy())


class BlockPacked:
    """Integers as, per block of ``BLOCK`` values, the block's least value and each value's
    excess over it, bit-packed as narrow as that block needs (blocks start on byte boundaries:
    64 values of ``w`` bits are ``8 * w`` bytes).

    Bucket offsets (non-decreasing) and a segment's row and entry ids (ascending, or nearly)
    are such sequences: a block spans a few hundred at most, so a value takes 6-10 bits plus
    about 2 of bookkeeping. One width for all would be set by the widest block (the largest
    bucket, a cluster of near duplicates; a gap in the ids)."""

    BLOCK = 1 << _BLOCK_SHIFT

    def __init__(self, data: np.ndarray, widths: np.ndarray, bases: np.ndarray, count: int) -> None:
        blocks = -(-count // self.BLOCK)
        if (
            data.dtype != np.uint8
            or data.ndim != 1
            or widths.dtype != np.uint8
            or widths.shape != (blocks,)
            or bases.dtype not in (np.int32, np.int64)
            or bases.shape != (blocks,)
            or (blocks and int(widths.max()) > MAX_BITS)
        ):
            raise ValueError("packed blocks that do not fit their count")
        ends = np.cumsum(widths.astype(np.int64) * self.BLOCK)  # each block's end, in bits
        if len(data) != (int(ends[-1]) // 8 if blocks else 0) + _PAD:
            raise ValueError("packed blocks that do not fit their buffer")
        self.data, self.widths, self.bases, self.count = data, widths, bases, count
        # Each block's first bit and width in one int64 (bit << 8 | width): a value costs one
        # gather of them, not two.
        self._meta = ((ends - widths.astype(np.int64) * self.BLOCK) << 8) | widths.astype(np.int64)
        # Two neighbours of a block share one 8-byte window while 7 + 2 * width <= 64.
        self._pairs_share_windows = not blocks or int(widths.max()) <= 28
        self._windows = np.ndarray(shape=(len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))
        # Non-decreasing values (bucket offsets) start each block at its base: where pairs share
        # windows too, the neighbour of a block's last value is the next block's base, one
        # gather rather than a decode.
        firsts = np.arange(0, count, self.BLOCK, dtype=np.int64)
        self._next_is_base = self._pairs_share_windows and bool(
            np.array_equal(self._decode(firsts, False)[0], self.bases)
        )

    @classmethod
    def pack(cls, values: np.ndarray) -> BlockPacked:
        """``values`` (integers) packed; ValueError if some block spans ``2**32`` or more.
        Steps of about a million values keep the temporaries small (tens of MB at 10M rows)."""
        count = len(values)
        blocks = -(-count // cls.BLOCK)
        step = _PACK_BLOCK // cls.BLOCK
        bases = np.zeros(blocks, dtype=np.int64)
        widths = np.zeros(blocks, dtype=np.uint8)
        for first in range(0, blocks, step):
            part = cls._blocks(values, first, step)
            bases[first : first + step] = part.min(axis=1)
            largest = part.max(axis=1) - bases[first : first + step]
            for width in range(MAX_BITS + 1):  # each block's largest excess's bit length
                widths[first : first + step][largest >> width > 0] = width + 1
        if blocks and int(widths.max()) > MAX_BITS:
            raise ValueError(f"a block of values spans more than {MAX_BITS} bits")
        starts = np.concatenate([[0], np.cumsum(widths.astype(np.int64) * (cls.BLOCK // 8))])
        data = np.zeros(int(starts[-1]) + _PAD, dtype=np.uint8)
        for first in range(0, blocks, step):
            excess = cls._blocks(values, first, step) - bases[first : first + step, None]
            # Each excess's bits, lowest first; a block of width w keeps the low w of each.
            spread = np.unpackbits(
                excess.astype("<u4").view(np.uint8).reshape(-1, cls.BLOCK, 4), axis=2, bitorder="little"
            )
            for width in np.unique(widths[first : first + step]).tolist():
                if width == 0:
                    continue  # a block of equal values: its base says it all
                chosen = np.flatnonzero(widths[first : first + step] == width)
                packed = np.packbits(spread[chosen, :, :width].reshape(len(chosen), -1), axis=1, bitorder="little")
                data[(starts[first + chosen][:, None] + np.arange(packed.shape[1]))] = packed
        narrow = blocks == 0 or (int(bases.min()) >= -(2**31) and int(bases.max()) < 2**31)
        return cls(data, widths, bases.astype(np.int32 if narrow else np.int64), count)

    @classmethod
    def _blocks(cls, values: np.ndarray, first: int, count: int) -> np.ndarray:
        """Blocks ``first`` to ``first + count`` as rows of int64, the last padded with its last value."""
        part = np.asarray(values[first * cls.BLOCK : (first + count) * cls.BLOCK], dtype=np.int64)
        short = -len(part) % cls.BLOCK
        if short:
            part = np.concatenate([part, np.full(short, part[-1], dtype=np.int64)])
        return part.reshape(-1, cls.BLOCK)

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes + self.widths.nbytes + self.bases.nbytes + self._meta.nbytes)

    def take(self, indexes: np.ndarray) -> np.ndarray:
        """The values at ``indexes`` (integers in ``[0, len)``), as int64."""
        return self._decode(np.asarray(indexes, dtype=np.int64), False)[0]

    def take_pairs(self, indexes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The values at ``indexes`` and at ``indexes + 1`` (each below ``len - 1``), as int64:
        a bucket's start and end, read mostly from one window instead of two."""
        first, second = self._decode(np.asarray(indexes, dtype=np.int64), True)
        assert second is not None
        return first, second

    def _decode(self, indexes: np.ndarray, pairs: bool) -> tuple[np.ndarray, np.ndarray | None]:
        block = indexes >> _BLOCK_SHIFT
        meta = self._meta[block]
        width = meta & 0xFF
        within = indexes & (self.BLOCK - 1)
        bit = (meta >> 8) + within * width
        windows = self._windows[bit >> 3]
        windows >>= (bit & 7).astype(np.uint64)
        masks = _MASKS[width]
        base = self.bases[block]
        values: np.ndarray = (windows & masks).view(np.int64) + base
        if not pairs:
            return values, None
        windows >>= width.astype(np.uint64)
        windows &= masks
        following: np.ndarray = windows.view(np.int64) + base
        # The last value of a block has its neighbour in the next block (and wide blocks
        # may not hold both in one window): those few are decoded on their own.
        apart = within == self.BLOCK - 1
        if not self._pairs_share_windows:
            apart |= width > 28
        elsewhere = np.flatnonzero(apart)
        if len(elsewhere):
            if self._next_is_base:  # ``apart`` holds blocks' last values only
                following[elsewhere] = self.bases[block[elsewhere] + 1]
            else:
                following[elsewhere] = self._decode(indexes[elsewhere] + 1, False)[0]
        return values, following

    def __getitem__(self, indexes: np.ndarray) -> np.ndarray:
        return self.take(indexes)

    def unpack(self) -> np.ndarray:
        """Every value, as int64."""
        return self.take(np.arange(self.count, dtype=np.int64))

    def search_sorted(self, values: np.ndarray) -> np.ndarray:
        """Where each of ``values`` is, or -1, in ascending values: the one block that may
        hold each is decoded, never the whole array (int64 positions)."""
        values = np.asarray(values, dtype=np.int64)
        found = np.full(len(values), -1, dtype=np.int64)
        block = np.searchsorted(self.bases, values, side="right") - 1
        inside = np.flatnonzero(block >= 0)
        if not len(inside):
            return found
        # Each candidate block's values as a row (the last block's tail repeats its last value).
        firsts = block[inside] * self.BLOCK
        spans = np.minimum(firsts[:, None] + np.arange(self.BLOCK), self.count - 1)
        decoded = self.take(spans.ravel()).reshape(spans.shape)
        offsets = (decoded < values[inside, None]).sum(axis=1)
        offsets = np.minimum(offsets, self.BLOCK - 1)
        hit = decoded[np.arange(len(inside)), offsets] == values[inside]
        found[inside[hit]] = spans[hit, offsets[hit]]
        return found
