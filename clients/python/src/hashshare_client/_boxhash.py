"""pHash and dHash of many windows of one image at once.

A lookup for a cropped re-upload tries dozens of windows of the upload
against the stored centre of the original; imagehash would take a quarter of
a millisecond per hash. Here every window's cells are averaged from one
integral image and all windows are hashed in a few vectorised steps. The
bits mean what imagehash's mean (DCT signs against their median, and
left-to-right brightness steps), but the resampling differs, so these hashes
are only compared with hashes made here: the views that use them have
regions of their own (signal_types.VIEWS).
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

PHASH_CELLS = 32
PHASH_KEEP = 8
DHASH_COLUMNS, DHASH_ROWS = 9, 8


def integral(image: Image.Image) -> np.ndarray:
    """Cumulative luminance sums with a zero row and column in front."""
    luminance = np.asarray(image.convert("L"), dtype=np.float64)
    table = np.zeros((luminance.shape[0] + 1, luminance.shape[1] + 1))
    table[1:, 1:] = luminance.cumsum(0).cumsum(1)
    return table


def _cell_means(table: np.ndarray, boxes: np.ndarray, columns: int, rows: int) -> np.ndarray:
    """Mean luminance of a rows x columns grid over each box (left, top, right, bottom) in pixels."""
    xs = np.rint(boxes[:, 0:1] + (boxes[:, 2:3] - boxes[:, 0:1]) * np.linspace(0, 1, columns + 1)).astype(int)
    ys = np.rint(boxes[:, 1:2] + (boxes[:, 3:4] - boxes[:, 1:2]) * np.linspace(0, 1, rows + 1)).astype(int)
    # Every cell at least one pixel wide, so that tiny windows still average something.
    xs = np.maximum(xs, xs[:, :1] + np.arange(columns + 1))
    ys = np.maximum(ys, ys[:, :1] + np.arange(rows + 1))
    xs = np.minimum(xs, table.shape[1] - 1)
    ys = np.minimum(ys, table.shape[0] - 1)
    corners = table[ys[:, :, None], xs[:, None, :]]  # (N, rows + 1, columns + 1)
    sums = corners[:, 1:, 1:] - corners[:, :-1, 1:] - corners[:, 1:, :-1] + corners[:, :-1, :-1]
    areas = np.diff(ys, axis=1)[:, :, None] * np.diff(xs, axis=1)[:, None, :]
    means: np.ndarray = sums / np.maximum(areas, 1)
    return means


@functools.cache
def _dct_matrix(size: int) -> np.ndarray:
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    matrix: np.ndarray = np.cos(np.pi * (2 * n + 1) * k / (2 * size))
    return matrix


def phash(table: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, 8) bytes: the signs of each window's 8x8 lowest DCT frequencies against their median."""
    cells = _cell_means(table, boxes, PHASH_CELLS, PHASH_CELLS)
    dct = _dct_matrix(PHASH_CELLS)[:PHASH_KEEP]
    low = dct @ cells @ dct.T  # (N, 8, 8)
    flat = low.reshape(len(boxes), -1)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    packed: np.ndarray = np.packbits(bits, axis=1)
    return packed


def dhash(table: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, 8) bytes: whether each cell is brighter than its left neighbour, 8 x 8 per window."""
    cells = _cell_means(table, boxes, DHASH_COLUMNS, DHASH_ROWS)
    bits = cells[:, :, 1:] > cells[:, :, :-1]
    packed: np.ndarray = np.packbits(bits.reshape(len(boxes), -1), axis=1)
    return packed


def boxes_of(size: tuple[int, int], fractions: list[tuple[float, float, float, float]]) -> np.ndarray:
    """Fractions (left, top, right, bottom) of an image of ``size`` as pixel boxes."""
    width, height = size
    boxes: np.ndarray = np.asarray(fractions, dtype=np.float64) * np.array([width, height, width, height])
    return boxes
