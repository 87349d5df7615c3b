"""Index snapshots: a restart loads compact arrays instead of re-reading every row.

A snapshot is a directory holding, for every sub-index, its live rows as three
``.npy`` files (row ids, entry ids, encoded values) and a ``manifest.json``
naming them with the bank's id and the change-feed position the rows reflect.
It is written into a temporary sibling directory, then renamed into place, so
a reader sees a whole snapshot or none (a crash between the two renames loses
the snapshot, and the next start does a full load).

A snapshot is only a cache: ``load`` returns None (and logs why) for a missing,
foreign, corrupt or old-format one, and the caller reads the store instead.
Rows changed after the snapshot's position are replayed from the change feed,
which is idempotent, so a snapshot need not be taken at a quiet moment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashshare_client.signal_types import SIGNAL_TYPES, VIEWS

from ..settings import Settings
from .signal_index import IndexKey, RowArrays, SignalIndex

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_PARTS = ("row_ids", "entry_ids", "values")


def schema() -> str:
    """A fingerprint of the signal types and views this server indexes: a snapshot made by
    a server that knew other ones may lack rows this one would index, so it is not used."""
    known = {
        "types": sorted(SIGNAL_TYPES),
        "views": sorted((name, view.region) for name, view in VIEWS.items()),
    }
    return hashlib.sha256(json.dumps(known, sort_keys=True).encode()).hexdigest()[:16]


def save(
    index: SignalIndex,
    position: str,
    bank_id: str,
    directory: Path,
    extras: Mapping[str, np.ndarray] | None = None,
) -> int:
    """Write ``index``'s live rows as the snapshot at ``directory``, replacing any older one.

    ``position`` must be a feed position whose changes the index has all applied (later
    ones may be applied too: they are replayed on load). ``extras`` are other arrays kept
    current by the same feed (the entry-summary table), saved beside it under their names.
    How many rows were written."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    temporary = directory.with_name(f"{directory.name}.tmp-{uuid.uuid4().hex[:12]}")
    temporary.mkdir()
    try:
        parts: list[dict[str, Any]] = []
        count = 0
        for n, (key, (arrays, structure)) in enumerate(sorted(index.export_snapshot().items())):
            files = {}
            for name, array in zip(_PARTS, arrays, strict=True):
                file_name = f"{n:03d}-{name}.npy"
                _write_array(temporary / file_name, array)
                files[name] = file_name
            part: dict[str, Any] = {"key": list(key), "rows": len(arrays[0]), "files": files}
            if structure is not None:
                # The search structure too, so that a restart need not rebuild it (most of a
                # restart's time). Readers that do not know this key rebuild it.
                part["structure"] = {}
                for name, array in structure.items():
                    file_name = f"{n:03d}-structure-{name}.npy"
                    _write_array(temporary / file_name, array)
                    part["structure"][name] = file_name
            parts.append(part)
            count += len(arrays[0])
        extra_files = {}
        for name, array in (extras or {}).items():
            extra_files[name] = f"extra-{name}.npy"
            _write_array(temporary / extra_files[name], array)
        manifest = {
            "format": FORMAT_VERSION,
            "bank_id": bank_id,
            "position": position,
            "schema": schema(),
            "indexes": parts,
            "extras": extra_files,
        }
        _write_bytes(temporary / MANIFEST, json.dumps(manifest, indent=1).encode())
        _fsync_directory(temporary)
        _replace_directory(temporary, directory)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return count


def load(directory: Path, bank_id: str) -> tuple[str, dict[IndexKey, RowArrays]] | None:
    """The snapshot's feed position and rows per sub-index key, or None (logged) when there
    is no usable snapshot of this bank at ``directory``."""
    found = load_with_structures(directory, bank_id)
    return None if found is None else (found.position, found.rows)


@dataclass(frozen=True)
class Loaded:
    """A snapshot read back: its feed position, rows and search structures per sub-index
    (for ``SignalIndex.load_arrays``), and the extra arrays saved with it."""

    position: str
    rows: dict[IndexKey, RowArrays]
    structures: dict[IndexKey, dict[str, np.ndarray]]
    extras: dict[str, np.ndarray]


def load_with_structures(directory: Path, bank_id: str) -> Loaded | None:
    """``load``, with the search structures and extras saved with the rows."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        log.info("no index snapshot at %s: loading from the store", directory)
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT_VERSION:
            log.warning(
                "index snapshot %s has format %r, not %d: ignored", directory, manifest.get("format"), FORMAT_VERSION
            )
            return None
        if manifest.get("bank_id") != bank_id:
            log.warning("index snapshot %s belongs to another bank: ignored", directory)
            return None
        if manifest.get("schema") != schema():
            log.warning("index snapshot %s was made for other signal types or views: ignored", directory)
            return None
        position = manifest["position"]
        if not isinstance(position, str):
            raise ValueError(f"position {position!r} is not a string")
        rows: dict[IndexKey, RowArrays] = {}
        structures: dict[IndexKey, dict[str, np.ndarray]] = {}
        for part in manifest["indexes"]:
            type_name, version, region = (str(k) for k in part["key"])
            arrays = tuple(np.load(directory / part["files"][name], allow_pickle=False) for name in _PARTS)
            row_ids, entry_ids, values = arrays
            if not (len(row_ids) == len(entry_ids) == len(values) == int(part["rows"])):
                raise ValueError(f"{part['key']}: arrays of unequal lengths")
            if row_ids.ndim != 1 or entry_ids.ndim != 1 or row_ids.dtype.kind != "i" or entry_ids.dtype.kind != "i":
                raise ValueError(f"{part['key']}: ids are not 1-D integer arrays")
            rows[(type_name, version, region)] = (row_ids, entry_ids, values)
            if isinstance(part.get("structure"), dict):
                structures[(type_name, version, region)] = {
                    str(name): np.load(directory / file_name, allow_pickle=False)
                    for name, file_name in part["structure"].items()
                }
        extras = {
            str(name): np.load(directory / file_name, allow_pickle=False)
            for name, file_name in (manifest.get("extras") or {}).items()
        }
    except Exception as error:  # anything unreadable: the store is the truth
        log.warning("index snapshot %s is unreadable (%s): ignored", directory, error)
        return None
    return Loaded(position, rows, structures, extras)


def _write_array(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as out:
        np.save(out, np.ascontiguousarray(array), allow_pickle=False)
        out.flush()
        os.fsync(out.fileno())


def _write_bytes(path: Path, data: bytes) -> None:
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _replace_directory(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` by renames (a directory cannot be replaced in one)."""
    old = None
    if target.exists():
        old = target.with_name(f"{target.name}.old-{uuid.uuid4().hex[:12]}")
        os.rename(target, old)
    os.rename(source, target)
    _fsync_directory(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def position_key(position: str) -> tuple[int, ...]:
    """A feed position as comparable numbers: SQLite's ``"42"``, Redis's ``"1700000000000-3"``
    (empty or ``"0-0"``: the start). ValueError for anything else."""
    if not position:
        return (0,)
    return tuple(int(part) for part in position.split("-"))


def snapshot_directory(settings: Settings) -> Path | None:
    """Where the index snapshot of a server with ``settings`` lives, or None for none:
    ``--snapshot-dir``, else ``PATH.snapshot`` next to a ``sqlite:///PATH`` store."""
    if settings.snapshot_dir:
        return Path(settings.snapshot_dir)
    if settings.store.startswith("sqlite:///"):
        path = settings.store.removeprefix("sqlite:///")
        if path and path != ":memory:" and not path.startswith("file:"):
            return Path(os.path.expanduser(path + ".snapshot"))
    return None
