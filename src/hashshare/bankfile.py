"""Bank files: whole banks into and out of a store, without a server
(``hashshare-server import`` and ``export``).

Two formats, both UTF-8 text, one record per line.

**JSONL** (``--format jsonl``, the default): one entry per line, a JSON object::

    {"entry_id": "ent_12", "category": "hate_speech.ethnicity",
     "signals": [{"type": "image/pdq", "version": "pdq1", "hex": "f8f0...", "quality": 92, "variant": ""},
                 {"type": "image/pdq", "version": "pdq1", "hex": "e0c1...", "quality": 90, "variant": "top85"}],
     "submissions": [{"legal_basis": "local_law", "discovery_method": "authority_notice",
                      "notice_reference": "CV-2026-117", "notice_received_at": "2026-01-05T08:00:00Z",
                      "removed_at": "2026-01-05T09:12:44.250000Z", "created_at": "2026-01-05T09:13:02Z"}]}

- ``entry_id``: written by export for reference; ignored by import, which assigns new ids.
- ``category``: a category id of the taxonomy (on import, ``--category`` fills it in when absent).
- ``signals``: at least one; ``type`` and ``hex`` are required, ``version`` defaults to the
  type's current version (another version is refused: it is not comparable), ``quality``
  (0-100) and ``variant`` (a stored view: "", "trimmed", "top85", ...) are optional. The
  checks are Submit's: PDQ/pHash/dHash quality below 50 is refused.
- ``submissions``: the confirmed removals behind the entry, each with ``legal_basis``
  (community_guidelines, local_law, community_guidelines_and_local_law), ``discovery_method``
  (unspecified, authority_notice, user_report, proactive, trusted_flagger),
  ``notice_reference``, and RFC 3339 times ``notice_received_at``, ``removed_at``,
  ``created_at`` (null or absent when unknown). Absent or empty: one submission with the
  import's defaults. A bank file never names members: on import every submission belongs
  to ``--member``, so an entry counts one corroboration in the new bank.

Export writes every active entry that has an active signal, with its active signals and
active submissions only (retracted ones are left out).

**Hash lists** (``--format hashlist --type T``): one hex hash per line, as other
hash-sharing programmes exchange them (PDQ as ThreatExchange writes it, MD5 as md5sum
prints it, or any other type's hex form), optionally followed by ``,quality`` (PDQ).
Blank lines and lines starting with ``#`` are skipped. Import needs ``--category`` for the
whole file and makes one entry per hash; export writes each distinct hash of type ``T`` of
the whole image (not of its views) once.

**Import** writes straight into the store through its import path (``Store.import_batch``,
one transaction per 50,000 lines, inside ``Store.bulk_writes``), and a running server
picks the new entries up through the change feed. A file (and a list of in-memory
items) is parsed by processes of the import's own, one a core, each taking every n-th
batch, while this one writes. A crash or a power loss during an import leaves whole
batches (never part of one) and an intact store: import the file again to finish it.
Everything is durable once the import has reported. Imported entries are not clustered
with existing ones. Every line is validated first; a bad line (bad hex, wrong length,
unknown type or category, bad JSON) is skipped and reported with its line number, and
nothing of it is written; the others are imported. ``--strict`` instead checks the
whole file first and imports nothing if any line is bad. Each line's key is a digest
of its content, and the store keeps the keys of the lines each member imported, so
importing the same file twice, or a hash repeated in a file, stores nothing twice: such
lines are counted as "already in the bank".
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import itertools
import json
import json.encoder
import multiprocessing
import multiprocessing.connection
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, TypeVar

from hashshare_client import DiscoveryMethod, LegalBasis, Signal
from hashshare_client.signal_types import SIGNAL_TYPES, Comparison, SignalType, view

from .errors import NotFound
from .members import find_member
from .model import IdKind, Member, format_id, parse_id
from .store.base import ImportBatch, ImportedSignal, ImportedSubmission, ImportOutcome, Store
from .taxonomy import Taxonomy

FORMATS = ("jsonl", "hashlist")
# Lines per transaction. Each line's key lands at a random place in the store's table of
# imported keys, so every batch rewrites most of its pages: the fewer batches, the fewer
# rewrites. Two batches are in memory at a time (three when a second process reads).
BATCH_LINES = 50_000
_IMPORT_SWITCH_INTERVAL = 0.0005  # seconds; see write_lines
_MOST_READERS = 4  # processes reading a file: more would wait for the one writer
MAX_SIGNALS = 320
MAX_NOTICE_REFERENCE = 200
# A regular expression checks a long hex string in C; a set of its characters does not.
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]+")
# The canonical form of a JSONL record, whose digest is its key (see _canonical).
_CANONICAL = json.JSONEncoder(sort_keys=True)
_escape = json.encoder.encode_basestring_ascii  # a JSON string as _CANONICAL writes one (C)
_RECORD_KEYS = frozenset(("entry_id", "category", "signals", "submissions"))
_SIGNAL_KEYS = frozenset(("hex", "quality", "type", "variant", "version"))
_SUBMISSION_ORDER = (  # sorted, as written out in _canonical
    "created_at",
    "discovery_method",
    "legal_basis",
    "notice_received_at",
    "notice_reference",
    "removed_at",
)
_SUBMISSION_KEYS = frozenset(_SUBMISSION_ORDER)


class LineError(ValueError):
    """Why one line of a bank file cannot be imported (args: the reason, the line number)."""


# A valid line: its number, its key (a digest of its content, from which the store knows
# it was imported before), its submissions, and the signals of the first.
ParsedLine = tuple[int, bytes, Sequence[ImportedSubmission], Sequence[ImportedSignal]]
# A line of a file and its number: the line parsed, why it is bad, or None for nothing (a
# blank line, a comment).
LineParser = Callable[[str, int], "ParsedLine | LineError | None"]
T = TypeVar("T")


@dataclass
class ImportReport:
    lines: int = 0  # records read (blank lines and comments are not counted)
    imported: int = 0  # new entries
    already_present: int = 0  # lines imported before, or repeated in this file
    submissions: int = 0  # new submissions
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number, why)
    written: bool = True  # False when --strict refused the file
    seconds: float = 0.0

    def summary(self, shown: int = 20) -> str:
        text = [
            f"{self.lines} lines read: {self.imported} entries imported, {self.already_present} already in the bank, "
            f"{len(self.errors)} bad lines {'skipped' if self.written else 'found: nothing was imported'}"
            f" ({self.seconds:.2f} s)"
        ]
        text += [f"  line {n}: {why}" for n, why in self.errors[:shown]]
        if len(self.errors) > shown:
            text.append(f"  ... and {len(self.errors) - shown} more (--json lists them all)")
        return "\n".join(text)

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "imported": self.imported,
            "already_present": self.already_present,
            "submissions": self.submissions,
            "written": self.written,
            "seconds": round(self.seconds, 3),
            "errors": [{"line": n, "error": why} for n, why in self.errors],
        }


# Reading


def make_signal(
    type_name: object, hex_value: object, version: object = None, quality: object = None, variant: object = ""
) -> ImportedSignal:
    """A storable signal, checked as Submit checks one; LineError otherwise."""
    signal_type = _signal_type(type_name, version)
    if not isinstance(hex_value, str) or not _HEX_DIGITS.fullmatch(hex_value) or len(hex_value) % 2:
        raise LineError(f"not a hexadecimal hash: {str(hex_value)[:80]!r}")
    if len(hex_value) != 2 * signal_type.size_bytes:
        raise LineError(f"{signal_type.name} takes {2 * signal_type.size_bytes} hex digits, got {len(hex_value)}")
    _check_view_and_quality(signal_type, variant, quality)
    return (signal_type.name, signal_type.version, bytes.fromhex(hex_value), quality, variant)  # type: ignore[return-value]


def check_signal(signal: Signal) -> ImportedSignal:
    """``signal`` if it is storable (``make_signal``'s checks, on its bytes); LineError otherwise."""
    signal_type = _signal_type(signal.type, signal.version)
    if not isinstance(signal.value, bytes) or len(signal.value) != signal_type.size_bytes:
        raise LineError(f"{signal_type.name} takes {signal_type.size_bytes} bytes, got {len(signal.value)}")
    _check_view_and_quality(signal_type, signal.variant, signal.quality)
    return (signal.type, signal.version, signal.value, signal.quality, signal.variant)


def _signal_type(type_name: object, version: object) -> SignalType:
    signal_type = SIGNAL_TYPES.get(type_name) if isinstance(type_name, str) else None
    if signal_type is None:
        raise LineError(f"unknown signal type {type_name!r} (known: {', '.join(SIGNAL_TYPES)})")
    if version is not None and version != signal_type.version:
        raise LineError(f"{signal_type.name} version {version!r} is not comparable with {signal_type.version!r}")
    return signal_type


def _check_view_and_quality(signal_type: SignalType, variant: object, quality: object) -> None:
    if not isinstance(variant, str) or (found := view(variant)) is None or not found.stored:
        raise LineError(f"not a stored view: {variant!r}")
    if variant and signal_type.comparison is not Comparison.HAMMING:
        raise LineError(f"{signal_type.name} has no views, got {variant!r}")
    if quality is not None:
        if not isinstance(quality, int) or isinstance(quality, bool) or not 0 <= quality <= 100:
            raise LineError(f"quality must be an integer 0-100, got {quality!r}")
        if signal_type.min_quality is not None and quality < signal_type.min_quality:
            raise LineError(
                f"{signal_type.name} quality {quality} is below {signal_type.min_quality}: "
                "too little detail to match reliably"
            )


def _time(value: object, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise LineError(f"{name} must be an RFC 3339 time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise LineError(f"{name} is not an RFC 3339 time: {value!r}") from None
    if parsed.tzinfo is None:
        raise LineError(f"{name} needs a time zone: {value!r}")
    return parsed.timestamp()


def _rfc3339(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _enum(enum_type: type[LegalBasis] | type[DiscoveryMethod], value: object, name: str) -> Any:
    try:
        if not isinstance(value, str):
            raise ValueError(value)
        return enum_type(value)
    except ValueError:
        valid = ", ".join(m.value for m in enum_type if m.value != "unspecified" or enum_type is DiscoveryMethod)
        raise LineError(f"unknown {name} {value!r} (valid: {valid})") from None


@dataclass(frozen=True)
class Defaults:
    """What a line leaves unsaid."""

    category: str | None
    legal_basis: LegalBasis = LegalBasis.COMMUNITY_GUIDELINES
    discovery_method: DiscoveryMethod = DiscoveryMethod.UNSPECIFIED
    now: float = 0.0

    def submission(self, category: str) -> ImportedSubmission:
        """The submission of a line that says nothing about it."""
        return (category, self.legal_basis.value, self.discovery_method.value, "", None, self.now, None)


def _check_category(category: object, taxonomy: Taxonomy) -> str:
    if not isinstance(category, str) or not category:
        raise LineError("no category: give one on the line or with --category")
    if category not in taxonomy:
        raise LineError(f"unknown category {category!r}")
    return category


def _jsonl_line(text: str, number: int, taxonomy: Taxonomy, defaults: Defaults) -> ParsedLine:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise LineError(f"not JSON: {error.msg} at column {error.colno}") from None
    if not isinstance(record, dict):
        raise LineError("not a JSON object")
    category = _check_category(record.get("category") or defaults.category, taxonomy)
    raw_signals = record.get("signals")
    if not isinstance(raw_signals, list) or not raw_signals:
        raise LineError("signals: at least one signal is required")
    if len(raw_signals) > MAX_SIGNALS:
        raise LineError(f"signals: at most {MAX_SIGNALS}, got {len(raw_signals)}")
    signals = []
    for i, raw in enumerate(raw_signals):
        if not isinstance(raw, dict):
            raise LineError(f"signals[{i}]: not a JSON object")
        try:
            signals.append(
                make_signal(
                    raw.get("type"), raw.get("hex"), raw.get("version"), raw.get("quality"), raw.get("variant", "")
                )
            )
        except LineError as error:
            raise LineError(f"signals[{i}]: {error}") from None
    raw_submissions = record.get("submissions") or [{}]
    if not isinstance(raw_submissions, list):
        raise LineError("submissions: not a list")
    submissions: list[ImportedSubmission] = []
    for i, raw in enumerate(raw_submissions):
        if not isinstance(raw, dict):
            raise LineError(f"submissions[{i}]: not a JSON object")
        try:
            legal = _enum(LegalBasis, raw.get("legal_basis", defaults.legal_basis.value), "legal_basis")
            if legal is LegalBasis.UNSPECIFIED:
                raise LineError("legal_basis is required")
            method = _enum(DiscoveryMethod, raw.get("discovery_method", defaults.discovery_method.value), "method")
            reference = raw.get("notice_reference", "")
            if not isinstance(reference, str) or len(reference) > MAX_NOTICE_REFERENCE:
                raise LineError(f"notice_reference must be text of at most {MAX_NOTICE_REFERENCE} characters")
            removed_at = _time(raw.get("removed_at"), "removed_at")
            submissions.append(
                (
                    category,
                    legal.value,
                    method.value,
                    reference,
                    _time(raw.get("notice_received_at"), "notice_received_at"),
                    defaults.now if removed_at is None else removed_at,
                    _time(raw.get("created_at"), "created_at"),
                )
            )
        except LineError as error:
            raise LineError(f"submissions[{i}]: {error}") from None
    return number, hashlib.sha256(_canonical(record, category).encode()).digest(), submissions, signals


def _canonical(record: dict[str, Any], category: str) -> str:
    """The canonical form of a checked record, whose digest is its key: what
    ``_CANONICAL`` encodes of it without ``entry_id`` and with ``category``.

    The encoder spends a third of a line's parsing on it (every dict's keys sorted,
    every string escaped); the records of an export have known fields in a known
    order, whose checked values need no escaping but for a notice reference and the
    times, and are put together here. Anything else goes to the encoder."""
    submissions = record.get("submissions")
    if record.keys() <= _RECORD_KEYS and (submissions is None or type(submissions) is list):
        # Checked: hex digits, a known type and view, the type's version or null, an
        # integer quality or null; then text or null for every field of a submission.
        parts = ['{"category": ', _escape(category), ', "signals": [']
        for n, raw in enumerate(record["signals"]):
            if raw.keys() != _SIGNAL_KEYS:
                break
            parts.append(
                f'{", " if n else ""}{{"hex": "{raw["hex"]}", "quality": {_json_int(raw["quality"])},'
                f' "type": "{raw["type"]}", "variant": "{raw["variant"]}", "version": {_json_text(raw["version"])}}}'
            )
        else:
            parts.append("]")
            if submissions is not None:
                parts.append(', "submissions": [')
                for n, raw in enumerate(submissions):
                    if type(raw) is not dict or not raw.keys() <= _SUBMISSION_KEYS:
                        break
                    if len(raw) == len(_SUBMISSION_KEYS):  # as an export writes them
                        fields = (
                            f'"created_at": {_json_text(raw["created_at"])},'
                            f' "discovery_method": {_json_text(raw["discovery_method"])},'
                            f' "legal_basis": {_json_text(raw["legal_basis"])},'
                            f' "notice_received_at": {_json_text(raw["notice_received_at"])},'
                            f' "notice_reference": {_json_text(raw["notice_reference"])},'
                            f' "removed_at": {_json_text(raw["removed_at"])}'
                        )
                    else:
                        fields = ", ".join(
                            f'"{key}": {_json_text(raw[key])}' for key in _SUBMISSION_ORDER if key in raw
                        )
                    parts.append(f"{', ' if n else ''}{{{fields}}}")
                else:
                    parts.append("]}")
                    return "".join(parts)
            elif "submissions" in record:
                parts.append(', "submissions": null}')
                return "".join(parts)
            else:
                parts.append("}")
                return "".join(parts)
    return _CANONICAL.encode({k: v for k, v in record.items() if k != "entry_id"} | {"category": category})


def _json_text(value: str | None) -> str:
    return "null" if value is None else _escape(value)


def _json_int(value: int | None) -> str:
    return "null" if value is None else int.__repr__(value)


def jsonl_parser(taxonomy: Taxonomy, defaults: Defaults) -> LineParser:
    """What ``_jsonl_line`` makes of each line; blank lines are skipped."""

    def parse(text: str, number: int) -> ParsedLine | LineError | None:
        if not text.strip():
            return None
        try:
            return _jsonl_line(text, number, taxonomy, defaults)
        except LineError as error:
            return LineError(str(error), number)

    return parse


def hashlist_parser(signal_type: str, taxonomy: Taxonomy, defaults: Defaults) -> LineParser:
    """One entry per hash; ``#`` comments and blank lines skipped. ValueError at once for
    a type or category the whole list cannot have."""
    try:
        category = _check_category(defaults.category, taxonomy)
        make_signal(signal_type, "00" * SIGNAL_TYPES[signal_type].size_bytes if signal_type in SIGNAL_TYPES else "")
    except LineError as error:
        raise ValueError(str(error)) from None
    submissions = (defaults.submission(category),)

    def parse(text: str, number: int) -> ParsedLine | LineError | None:
        text = text.strip()
        if not text or text.startswith("#"):
            return None
        hex_value, _, quality_text = text.partition(",")
        hex_value, quality_text = hex_value.strip().lower(), quality_text.strip()
        try:
            quality: int | None = None
            if quality_text:
                if not quality_text.isdigit():
                    raise LineError(f"quality must be an integer 0-100, got {quality_text[:20]!r}")
                quality = int(quality_text)
            signal = make_signal(signal_type, hex_value, None, quality)
        except LineError as error:
            return LineError(str(error), number)
        key = hashlib.sha256(f"{signal[0]}|{signal[1]}|{hex_value}|{quality}|{category}".encode()).digest()
        return number, key, submissions, (signal,)

    return parse


@dataclass
class _Batch:
    """A transaction's worth of records as the reading side hands them to the writer."""

    lines: ImportBatch = field(default_factory=ImportBatch)
    numbers: list[int] = field(default_factory=list)  # of the lines in ``lines``
    errors: list[tuple[int, str]] = field(default_factory=list)  # bad lines: (number, why)
    read: int = 0  # records read, good and bad


def _chunks(records: Iterable[T]) -> Iterator[list[tuple[int, T]]]:
    """Records numbered from 1, BATCH_LINES at a time (a batch is written in one transaction)."""
    numbered = enumerate(records, 1)
    while chunk := list(itertools.islice(numbered, BATCH_LINES)):
        yield chunk


def _batch(chunk: Iterable[tuple[int, T]], parse: Callable[[T, int], ParsedLine | LineError | None]) -> _Batch:
    batch = _Batch()
    for number, record in chunk:
        line = parse(record, number)
        if line is None:
            continue
        batch.read += 1
        if isinstance(line, LineError):
            batch.errors.append((number, str(line.args[0])))
            continue
        batch.numbers.append(number)
        batch.lines.add(line[1], line[2], line[3])
    return batch


# Writing into a store


def resolve_member(store: Store, text: str) -> Member:
    """A member by id (mem_N) or name."""
    if text.startswith(IdKind.MEMBER.value + "_"):
        member = store.get_member(parse_id(IdKind.MEMBER, text, "member"))
        if member is None:
            raise NotFound(f"no member {text}")
        return member
    return find_member(store, text)


def write_lines(
    store: Store, member_id: int, batches: Iterable[_Batch], report: ImportReport, now: float
) -> ImportReport:
    """Write the batches' valid lines, one transaction each; record the bad ones.

    A batch is written by a thread of its own while the next one is read: the
    store's inserts run in SQLite's C code without the GIL, so reading and writing
    overlap. Batches are still written one at a time, in order."""
    started = time.monotonic()
    # Every line makes a dozen short-lived objects without cycles: left on, the cycle
    # collector would walk every live object over and over (a third of an import's time).
    collecting = gc.isenabled()
    gc.disable()
    # The writer thread lets go of the GIL for every statement and waits for it back
    # while this one parses; the default 5 ms switch interval made those waits a tenth
    # of an import's time.
    switch_interval = sys.getswitchinterval()
    sys.setswitchinterval(min(switch_interval, _IMPORT_SWITCH_INTERVAL))
    try:
        with store.bulk_writes():
            _write_batches(store, member_id, batches, report, now)
    finally:
        sys.setswitchinterval(switch_interval)
        if collecting:
            gc.enable()
    report.errors.sort()
    report.seconds += time.monotonic() - started
    return report


def _write_batches(store: Store, member_id: int, batches: Iterable[_Batch], report: ImportReport, now: float) -> None:
    def account(outcome: ImportOutcome, batch: _Batch) -> None:
        report.errors += [(batch.numbers[line], why) for line, why in outcome.refused]
        report.already_present += len(outcome.present)
        report.imported += len(batch.numbers) - len(outcome.present) - len(outcome.refused)
        report.submissions += outcome.submissions

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hashshare-import") as writer:
        writing: tuple[Future[ImportOutcome], _Batch] | None = None
        for batch in batches:
            report.lines += batch.read
            report.errors += batch.errors
            if writing is not None:
                account(writing[0].result(), writing[1])
                writing = None
            if batch.numbers:
                writing = (writer.submit(store.import_batch, member_id, batch.lines, now), batch)
        if writing is not None:
            account(writing[0].result(), writing[1])


def _open_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8-sig", errors="strict") as lines:
        yield from lines


def _line_parser(file_format: str, signal_type: str | None, taxonomy: Taxonomy, defaults: Defaults) -> LineParser:
    if file_format == "jsonl":
        return jsonl_parser(taxonomy, defaults)
    if file_format == "hashlist":
        if not signal_type:
            raise ValueError("a hash list needs --type (for example image/pdq or exact/md5)")
        return hashlist_parser(signal_type, taxonomy, defaults)
    raise ValueError(f"unknown format {file_format!r} (use {' or '.join(FORMATS)})")


def _read_apart(
    records: Callable[[], Iterable[T]],
    parse: Callable[[T, int], ParsedLine | LineError | None],
    most_readers: int = _MOST_READERS,
) -> Iterator[_Batch]:
    """The batches of ``records()`` (a file's lines, items in a list), read by other
    processes while this one writes.

    Parsing a line costs about as much as storing it (a JSONL line's JSON, checks and
    digest, more), and one process holds one GIL, which the writer needs too: each of
    up to ``most_readers`` processes (one a core) goes through all the records, parses
    every n-th batch and sends it, and this one takes the batches in turn. Where a fork
    is unsafe (other threads here, or no fork on this system), the records are read
    here instead."""
    readers = _readers(most_readers)
    if not readers:
        yield from (_batch(chunk, parse) for chunk in _chunks(records()))
        return
    context = multiprocessing.get_context("fork")
    pipes = [context.Pipe(duplex=False) for _ in range(readers)]
    children = [
        context.Process(target=_send_batches, args=(records, parse, n, pipes), daemon=True) for n in range(readers)
    ]
    for child in children:
        child.start()
    for _, sender in pipes:
        sender.close()
    try:
        for n in itertools.count():
            try:
                message = pipes[n % readers][0].recv()
            except EOFError:
                raise RuntimeError("a process reading the import died") from None
            if message is None:
                return
            if isinstance(message, BaseException):
                raise message
            yield message
    finally:
        for receiver, _ in pipes:
            receiver.close()
        for child in children:
            child.join(timeout=5)
            if child.is_alive():  # stopped early: this side failed
                child.kill()
                child.join()


def _readers(most: int) -> int:
    """How many processes read an import: one a core, or none where a fork is unsafe."""
    if "fork" not in multiprocessing.get_all_start_methods() or threading.active_count() > 1:
        return 0
    return min(os.cpu_count() or 1, most)


def _send_batches(
    records: Callable[[], Iterable[T]],
    parse: Callable[[T, int], ParsedLine | LineError | None],
    reader: int,
    pipes: list[tuple[multiprocessing.connection.Connection, multiprocessing.connection.Connection]],
) -> None:
    """A reading process: parse every ``len(pipes)``-th batch from the ``reader``-th and
    send each, then None (or the exception that stopped it)."""
    sender = pipes[reader][1]
    for n, (receiver, other) in enumerate(pipes):
        # A write to a pipe nobody reads fails once the parent is gone, even killed: then
        # this process ends too.
        receiver.close()
        if n != reader:
            other.close()
    gc.disable()
    try:
        for n, chunk in enumerate(_chunks(records())):
            if n % len(pipes) == reader:
                sender.send(_batch(chunk, parse))
        sender.send(None)
    except BrokenPipeError:
        pass
    except BaseException as error:  # the parent raises it
        with contextlib.suppress(BrokenPipeError):
            sender.send(error)
    finally:
        sender.close()


def import_file(
    store: Store,
    path: Path,
    member: str,
    *,
    file_format: str = "jsonl",
    signal_type: str | None = None,
    category: str | None = None,
    legal_basis: LegalBasis = LegalBasis.COMMUNITY_GUIDELINES,
    discovery_method: DiscoveryMethod = DiscoveryMethod.UNSPECIFIED,
    taxonomy: Taxonomy | None = None,
    strict: bool = False,
    now: float | None = None,
) -> ImportReport:
    """Import a bank file into ``store`` on behalf of ``member`` (a name or mem_N)."""
    now = time.time() if now is None else now
    target = resolve_member(store, member)
    parse = _line_parser(
        file_format, signal_type, taxonomy or Taxonomy(), Defaults(category, legal_basis, discovery_method, now)
    )
    # Every reader opens the file: a pipe would hand each of them a part of it.
    readers = _MOST_READERS if path.is_file() else 1
    if strict:
        started = time.monotonic()
        check = ImportReport(written=False)
        for batch in _read_apart(lambda: _open_lines(path), parse, readers):
            check.lines += batch.read
            check.errors += batch.errors
        if check.errors:
            check.seconds = time.monotonic() - started
            return check
    batches = _read_apart(lambda: _open_lines(path), parse, readers)
    return write_lines(store, target.member_id, batches, ImportReport(), now)


def import_signals(
    store: Store,
    *,
    member_name: str,
    items: Iterable[Sequence[Signal]],
    category: str,
    legal_basis: LegalBasis = LegalBasis.COMMUNITY_GUIDELINES,
    now: float | None = None,
) -> ImportReport:
    """Import in-memory items (each the signals of one entry) as the file import does."""
    now = time.time() if now is None else now
    target = resolve_member(store, member_name)
    submissions = (Defaults(category, legal_basis, now=now).submission(category),)

    def parse(signals: Sequence[Signal], number: int) -> ParsedLine | LineError:
        try:
            checked = tuple(map(check_signal, signals))
        except LineError as error:
            return LineError(str(error), number)
        key = hashlib.sha256(
            "|".join([category, *(f"{s[0]}/{s[1]}/{s[2].hex()}/{s[3]}/{s[4]}" for s in checked)]).encode()
        ).digest()
        return number, key, submissions, checked

    # Items in a list can be read by other processes; a generator is read here (it may
    # have effects, which should happen once).
    if isinstance(items, Sequence):
        batches = _read_apart(lambda: items, parse)
    else:
        batches = (_batch(chunk, parse) for chunk in _chunks(items))
    return write_lines(store, target.member_id, batches, ImportReport(), now)


# Reading out of a store


def _active_entry_ids(store: Store) -> list[int]:
    return sorted({row.entry_id for row in store.active_signals()})


def export_records(store: Store) -> Iterator[dict[str, Any]]:
    """The JSONL records of every active entry that has an active signal, by entry id."""
    for entry_id in _active_entry_ids(store):
        entry = store.get_entry(entry_id)
        if entry is None or not entry.active:
            continue
        active = [s for s in entry.submissions if s.active]
        ids = {s.submission_id for s in active}
        seen: set[tuple[str, str, bytes, str]] = set()
        signals = []
        for stored in entry.signals:
            s = stored.signal
            if stored.submission_id not in ids or (s.type, s.version, s.value, s.variant) in seen:
                continue
            seen.add((s.type, s.version, s.value, s.variant))
            signals.append(
                {"type": s.type, "version": s.version, "hex": s.hex, "quality": s.quality, "variant": s.variant}
            )
        yield {
            "entry_id": format_id(IdKind.ENTRY, entry.entry_id),
            "category": entry.category,
            "signals": signals,
            "submissions": [
                {
                    "legal_basis": s.legal_basis.value,
                    "discovery_method": s.discovery_method.value,
                    "notice_reference": s.notice_reference,
                    "notice_received_at": _rfc3339(s.notice_received_at),
                    "removed_at": _rfc3339(s.removed_at),
                    "created_at": _rfc3339(s.created_at),
                }
                for s in active
            ],
        }


def export_file(store: Store, out: IO[str], *, file_format: str = "jsonl", signal_type: str | None = None) -> int:
    """Write the bank to ``out``; how many records (entries, or hashes) were written."""
    if file_format == "jsonl":
        count = 0
        for record in export_records(store):
            out.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
            count += 1
        return count
    if file_format != "hashlist":
        raise ValueError(f"unknown format {file_format!r} (use {' or '.join(FORMATS)})")
    if signal_type not in SIGNAL_TYPES:
        raise ValueError(f"a hash list needs --type, one of: {', '.join(SIGNAL_TYPES)}")
    version = SIGNAL_TYPES[signal_type].version
    out.write(f"# hashshare export: {signal_type} ({version}), one hex hash per line\n")
    seen: set[bytes] = set()
    for entry_id in _active_entry_ids(store):
        entry = store.get_entry(entry_id)
        if entry is None:
            continue
        active = {s.submission_id for s in entry.submissions if s.active}
        for stored in entry.signals:
            s = stored.signal
            if (
                stored.submission_id in active
                and s.type == signal_type
                and s.version == version
                and not s.variant
                and s.value not in seen
            ):
                seen.add(s.value)
                out.write(f"{s.hex},{s.quality}\n" if s.quality is not None else f"{s.hex}\n")
    return len(seen)
