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

**Import** writes straight into the store through its batch path (``Store.submit_many``,
one transaction per 50,000 lines, inside ``Store.bulk_writes``), and a running server
picks the new entries up through the change feed. A crash or a power loss during an
import leaves whole batches (never part of one) and an intact store: import the file
again to finish it. Everything is durable once the import has reported. Imported
entries are not clustered with existing ones. Every line is validated first; a bad
line (bad hex, wrong length, unknown type or category, bad JSON) is skipped and
reported with its line number, and nothing of it is written; the others are imported.
``--strict`` instead checks the whole file first and imports nothing if any line is bad.
Each line's request id is derived from its content, so importing the same file twice, or
a hash repeated in a file, stores nothing twice: such lines are counted as "already in
the bank".
"""

from __future__ import annotations

import gc
import hashlib
import json
import re
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from hashshare_client import DiscoveryMethod, LegalBasis, Signal
from hashshare_client.signal_types import SIGNAL_TYPES, Comparison, SignalType, view

from .errors import InvalidArgument, NotFound
from .members import find_member
from .model import IdKind, Member, SubmissionDraft, format_id, parse_id
from .store.base import BatchOutcome, BatchSubmission, Replayed, Store
from .taxonomy import Taxonomy

FORMATS = ("jsonl", "hashlist")
# Lines per transaction. Each line's request id lands at a random place in the requests
# index, so every batch rewrites most of that index's pages: the fewer batches, the fewer
# rewrites (measured at 1M images and 1M texts: 35k entries/s against 28k/s with 20,000).
# Two batches are in memory at a time.
BATCH_LINES = 50_000
_IMPORT_SWITCH_INTERVAL = 0.0005  # seconds; see write_lines
MAX_SIGNALS = 320
MAX_NOTICE_REFERENCE = 200
# A regular expression checks a long hex string in C; a set of its characters does not.
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]+")


class LineError(ValueError):
    """Why one line of a bank file cannot be imported."""


@dataclass(frozen=True)
class ParsedLine:
    """One valid line: the submissions of one entry, the first carrying its signals."""

    number: int
    key: str  # a digest of the line's content: its request ids derive from it
    drafts: tuple[tuple[SubmissionDraft, float | None], ...]  # (draft, created_at)


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
) -> Signal:
    """A storable signal, checked as Submit checks one; LineError otherwise."""
    signal_type = _signal_type(type_name, version)
    if not isinstance(hex_value, str) or not _HEX_DIGITS.fullmatch(hex_value) or len(hex_value) % 2:
        raise LineError(f"not a hexadecimal hash: {str(hex_value)[:80]!r}")
    if len(hex_value) != 2 * signal_type.size_bytes:
        raise LineError(f"{signal_type.name} takes {2 * signal_type.size_bytes} hex digits, got {len(hex_value)}")
    _check_view_and_quality(signal_type, variant, quality)
    return Signal(signal_type.name, signal_type.version, bytes.fromhex(hex_value), quality, variant)  # type: ignore[arg-type]


def check_signal(signal: Signal) -> Signal:
    """``signal`` if it is storable (``make_signal``'s checks, on its bytes); LineError otherwise."""
    signal_type = _signal_type(signal.type, signal.version)
    if not isinstance(signal.value, bytes) or len(signal.value) != signal_type.size_bytes:
        raise LineError(f"{signal_type.name} takes {signal_type.size_bytes} bytes, got {len(signal.value)}")
    _check_view_and_quality(signal_type, signal.variant, signal.quality)
    return signal


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
    drafts = []
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
            draft = SubmissionDraft(
                signals=tuple(signals) if i == 0 else (),
                category=category,
                legal_basis=legal,
                discovery_method=method,
                notice_reference=reference,
                notice_received_at=_time(raw.get("notice_received_at"), "notice_received_at"),
                removed_at=defaults.now if removed_at is None else removed_at,
            )
            drafts.append((draft, _time(raw.get("created_at"), "created_at")))
        except LineError as error:
            raise LineError(f"submissions[{i}]: {error}") from None
    canonical = json.dumps(
        {k: v for k, v in record.items() if k != "entry_id"} | {"category": category}, sort_keys=True
    )
    return ParsedLine(number, hashlib.sha256(canonical.encode()).hexdigest(), tuple(drafts))


def read_jsonl(lines: Iterable[str], taxonomy: Taxonomy, defaults: Defaults) -> Iterator[ParsedLine | LineError]:
    """Each non-blank line parsed, or its LineError (whose args[1] is the line number)."""
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            yield _jsonl_line(text, number, taxonomy, defaults)
        except LineError as error:
            yield LineError(str(error), number)


def read_hashlist(
    lines: Iterable[str], signal_type: str, taxonomy: Taxonomy, defaults: Defaults
) -> Iterator[ParsedLine | LineError]:
    """One entry per hash; ``#`` comments and blank lines skipped."""
    try:
        category = _check_category(defaults.category, taxonomy)
        make_signal(signal_type, "00" * SIGNAL_TYPES[signal_type].size_bytes if signal_type in SIGNAL_TYPES else "")
    except LineError as error:
        raise ValueError(str(error)) from None
    template = SubmissionDraft(
        signals=(),
        category=category,
        legal_basis=defaults.legal_basis,
        discovery_method=defaults.discovery_method,
        notice_reference="",
        notice_received_at=None,
        removed_at=defaults.now,
    )
    for number, text in enumerate(lines, 1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
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
            yield LineError(str(error), number)
            continue
        key = hashlib.sha256(f"{signal.type}|{signal.version}|{hex_value}|{quality}|{category}".encode()).hexdigest()
        draft = SubmissionDraft(
            (signal,),
            template.category,
            template.legal_basis,
            template.discovery_method,
            "",
            None,
            template.removed_at,
        )
        yield ParsedLine(number, key, ((draft, None),))


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
    store: Store, member_id: int, parsed: Iterable[ParsedLine | LineError], report: ImportReport, now: float
) -> ImportReport:
    """Write valid lines in batches of about BATCH_LINES lines; record bad ones.

    A batch is written by a thread of its own while the next one is parsed: the
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
            _write_lines(store, member_id, parsed, report, now)
    finally:
        sys.setswitchinterval(switch_interval)
        if collecting:
            gc.enable()
    report.seconds += time.monotonic() - started
    return report


def _write_lines(
    store: Store, member_id: int, parsed: Iterable[ParsedLine | LineError], report: ImportReport, now: float
) -> None:
    pending: list[BatchSubmission] = []
    firsts: list[tuple[int, int]] = []  # per line in pending: its number, the index of its first submission

    def account(outcomes: list[BatchOutcome], lines: list[tuple[int, int]]) -> None:
        for number, start in lines:
            first = outcomes[start]
            if isinstance(first, InvalidArgument):  # the same content imported before with other details
                report.errors.append((number, first.message))
            elif isinstance(first, Replayed):
                report.already_present += 1
            else:
                report.imported += 1
        report.submissions += sum(1 for o in outcomes if not isinstance(o, (Replayed, InvalidArgument)))

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hashshare-import") as writer:
        writing: tuple[Future[list[BatchOutcome]], list[tuple[int, int]]] | None = None

        def flush() -> None:
            nonlocal pending, firsts, writing
            if writing is not None:
                account(writing[0].result(), writing[1])
                writing = None
            if pending:
                writing = (writer.submit(store.submit_many, member_id, pending, now), firsts)
                pending, firsts = [], []

        for line in parsed:
            report.lines += 1
            if isinstance(line, LineError):
                report.errors.append((int(line.args[1]), str(line.args[0])))
                continue
            first = len(pending)
            firsts.append((line.number, first))
            for k, (draft, created_at) in enumerate(line.drafts):
                request_id = f"imp-{line.key[:40]}-{k}"
                digest = hashlib.sha256(f"{line.key}/{k}".encode()).digest()
                join = first if k else None
                pending.append(BatchSubmission(request_id, digest, draft, None, join, created_at))
            if len(pending) >= BATCH_LINES:
                flush()
        flush()
        flush()  # waits for the last batch


def _open_lines(path: Path) -> Iterator[str]:
    with open(path, encoding="utf-8-sig", errors="strict") as lines:
        yield from lines


def _reader(
    path: Path, file_format: str, signal_type: str | None, taxonomy: Taxonomy, defaults: Defaults
) -> Iterator[ParsedLine | LineError]:
    if file_format == "jsonl":
        return read_jsonl(_open_lines(path), taxonomy, defaults)
    if file_format == "hashlist":
        if not signal_type:
            raise ValueError("a hash list needs --type (for example image/pdq or exact/md5)")
        return read_hashlist(_open_lines(path), signal_type, taxonomy, defaults)
    raise ValueError(f"unknown format {file_format!r} (use {' or '.join(FORMATS)})")


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
    taxonomy = taxonomy or Taxonomy()
    target = resolve_member(store, member)
    defaults = Defaults(category, legal_basis, discovery_method, now)
    if strict:
        started = time.monotonic()
        check = ImportReport(written=False)
        for line in _reader(path, file_format, signal_type, taxonomy, defaults):
            check.lines += 1
            if isinstance(line, LineError):
                check.errors.append((int(line.args[1]), str(line.args[0])))
        if check.errors:
            check.seconds = time.monotonic() - started
            return check
    return write_lines(
        store, target.member_id, _reader(path, file_format, signal_type, taxonomy, defaults), ImportReport(), now
    )


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

    def parsed() -> Iterator[ParsedLine | LineError]:
        for number, signals in enumerate(items, 1):
            try:
                checked = tuple(map(check_signal, signals))
            except LineError as error:
                yield LineError(str(error), number)
                continue
            key = hashlib.sha256(
                "|".join(
                    [category, *(f"{s.type}/{s.version}/{s.value.hex()}/{s.quality}/{s.variant}" for s in checked)]
                ).encode()
            ).hexdigest()
            draft = SubmissionDraft(checked, category, legal_basis, DiscoveryMethod.UNSPECIFIED, "", None, now)
            yield ParsedLine(number, key, ((draft, None),))

    return write_lines(store, target.member_id, parsed(), ImportReport(), now)


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
