"""``hashshare``: hash content locally, look it up, submit and retract removals.

The server and token come from --server/--token or $HASHSHARE_SERVER and
$HASHSHARE_TOKEN. ``--json`` prints machine-readable output.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import signals
from ._client import Client
from ._config import TARGET_ENV, TOKEN_ENV
from ._exceptions import ApiError, HashshareError
from ._models import (
    ContactPoint,
    DiscoveryMethod,
    DisputeReason,
    LegalBasis,
    MatchResult,
    NoticeState,
    Opinion,
    ReviewDecision,
    to_jsonable,
)
from .signals import Signal


def _content_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--image", metavar="PATH", help="an image file")
    group.add_argument("--text", metavar="TEXT", help="a text, given on the command line")
    group.add_argument("--text-file", metavar="PATH", help="a UTF-8 text file ('-' for standard input)")


def _server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", help=f"HOST:PORT of the server [env {TARGET_ENV}, default 127.0.0.1:50051]")
    parser.add_argument("--token", help=f"bearer token [env {TOKEN_ENV}]")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each call, in seconds")


def _timestamp(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    # A time without a zone is taken as UTC, the bank's zone.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashshare", description="hashshare platform client")
    parser.add_argument("--json", action="store_true", help="print JSON")
    commands = parser.add_subparsers(dest="command", required=True)

    hash_ = commands.add_parser("hash", help="print the signals of an image or text (nothing is sent)")
    _content_arguments(hash_)

    match = commands.add_parser("match", help="look up an image or text in the bank")
    _content_arguments(match)
    _server_arguments(match)

    submit = commands.add_parser("submit", help="submit a confirmed removal")
    _content_arguments(submit)
    _server_arguments(submit)
    submit.add_argument("--category", required=True, help="category id, e.g. hate_speech (see `categories`)")
    submit.add_argument(
        "--legal-basis", default=LegalBasis.COMMUNITY_GUIDELINES.value, choices=[b.value for b in LegalBasis][1:]
    )
    submit.add_argument(
        "--discovery", default=DiscoveryMethod.UNSPECIFIED.value, choices=[m.value for m in DiscoveryMethod]
    )
    submit.add_argument("--notice-ref", default="", help="the notice's own reference")
    submit.add_argument("--notice-received-at", type=_timestamp, help="ISO 8601 time (UTC if no zone)")
    submit.add_argument("--removed-at", type=_timestamp, help="ISO 8601 time (UTC if no zone); default now")
    submit.add_argument("--request-id", help="idempotency key; a new one by default")

    retract = commands.add_parser("retract", help="withdraw your submissions on an entry")
    retract.add_argument("entry_id")
    retract.add_argument("--reason", default="")
    _server_arguments(retract)

    for name, help in (("entry", "show an entry"), ("spread", "how an entry's content kept spreading")):
        sub = commands.add_parser(name, help=help)
        sub.add_argument("entry_id")
        _server_arguments(sub)

    categories = commands.add_parser("categories", help="list the bank's categories")
    _server_arguments(categories)

    _notice_commands(commands)
    feedback = commands.add_parser("feedback", help="give your opinion of an entry (a later one replaces it)")
    feedback.add_argument("entry_id")
    feedback.add_argument("opinion", choices=[o.value for o in Opinion])
    feedback.add_argument("--reason", choices=[r.value for r in DisputeReason], help="required with disagree")
    feedback.add_argument("--comment", default="")
    _server_arguments(feedback)

    review = commands.add_parser("review", help="confirm, disable or re-enable an entry (authority, admin)")
    review.add_argument("entry_id")
    review.add_argument("decision", choices=[d.value for d in ReviewDecision])
    review.add_argument("--reason", default="", help="required to disable or enable")
    _server_arguments(review)

    allow = commands.add_parser("allow", help="put known-benign content on the allow-list (authority, admin)")
    _content_arguments(allow)
    allow.add_argument("--label", required=True, help='what it is, e.g. "national flag"')
    _server_arguments(allow)
    disallow = commands.add_parser("disallow", help="take an item off the allow-list (authority, admin)")
    disallow.add_argument("allow_id")
    disallow.add_argument("--reason", required=True)
    _server_arguments(disallow)
    allow_list = commands.add_parser("allow-list", help="list the allow-list")
    _server_arguments(allow_list)

    stats = commands.add_parser("feedback-stats", help="feedback given and received per platform (researchers)")
    stats.add_argument("--since", type=_timestamp, help="ISO 8601 start of the period (UTC if no zone)")
    stats.add_argument("--until", type=_timestamp, help="ISO 8601 end of the period, excluded")
    _server_arguments(stats)

    evaluate = commands.add_parser("eval", help="measure recall per re-upload trick and false matches")
    evaluate.add_argument("--images", type=Path, help="a folder of original images")
    evaluate.add_argument("--texts", type=Path, help="a UTF-8 file of original texts, one per line")
    evaluate.add_argument(
        "--builtin", action="store_true", help="use the photos and Vietnamese sentences installed packages ship"
    )
    evaluate.add_argument("--limit-images", type=int, help="use at most this many original images")
    evaluate.add_argument("--limit-texts", type=int, help="use at most this many original texts")
    evaluate.add_argument("--out", type=Path, default=Path("eval-results"), help="folder for eval.json and charts")
    evaluate.add_argument("--category", default="hate_speech", help="category of the originals it submits")
    evaluate.add_argument("--local-only", action="store_true", help="only the per-signal analysis; no server needed")
    _server_arguments(evaluate)

    report = commands.add_parser(
        "report", help="write the quarterly review (HTML, PNG charts, CSV) from the API; role researcher or authority"
    )
    report.add_argument("--quarter", required=True, help="the quarter to review, e.g. 2026Q4 (UTC)")
    report.add_argument("--out", type=Path, default=Path("report"), help="folder for index.html, charts and CSVs")
    report.add_argument("--top", type=int, default=10, help="how many of the largest clusters to show (1-100)")
    _server_arguments(report)
    return parser


def _contact_point(text: str) -> ContactPoint:
    parts = text.split("|")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError("a contact point is NAME|ROLE|EMAIL|PHONE (EMAIL or PHONE may be empty)")
    return ContactPoint(*(p.strip() for p in parts))


def _notice_commands(commands: Any) -> None:
    notice = commands.add_parser("notice", help="notices under the Code of Conduct (authority and platforms)")
    notice_commands = notice.add_subparsers(dest="notice_command", required=True)
    filing = notice_commands.add_parser("file", help="file a notice to a platform (role authority)")
    _content_arguments(filing)
    _server_arguments(filing)
    filing.add_argument("--platform", required=True, help="the platform's member id, mem_N")
    filing.add_argument("--category", required=True, help="category id, e.g. hate_speech")
    filing.add_argument("--content-ref", required=True, help="the platform's URL or id of the content")
    filing.add_argument("--legal-basis", default=LegalBasis.LOCAL_LAW.value, choices=[b.value for b in LegalBasis][1:])
    filing.add_argument("--legal-ref", default="", help='the provision, e.g. "Decree 72/2013, Article 5"')
    filing.add_argument("--description", default="")
    filing.add_argument("--request-id", help="idempotency key; a new one by default")
    answer = notice_commands.add_parser("answer", help="decide a notice filed to your platform (role trust_safety)")
    answer.add_argument("notice_id")
    answer.add_argument("--decision", required=True, choices=["removed", "disabled", "rejected"])
    answer.add_argument("--reason", default="", help="required for a rejection")
    answer.add_argument("--removed-at", type=_timestamp, help="ISO 8601 time (UTC if no zone); default now")
    answer.add_argument("--request-id", help="idempotency key; a new one by default")
    _server_arguments(answer)
    show = notice_commands.add_parser("show", help="show a notice")
    show.add_argument("notice_id")
    _server_arguments(show)
    listing = notice_commands.add_parser("list", help="list notices, oldest first, one page")
    listing.add_argument("--platform", default="", help="only notices to this member id")
    listing.add_argument("--state", choices=[s.value for s in NoticeState][1:])
    listing.add_argument("--page-size", type=int, default=0)
    listing.add_argument("--page-token", default="")
    _server_arguments(listing)
    stats = notice_commands.add_parser("stats", help="per platform: notices received, decided within 24 hours")
    stats.add_argument("--start", type=_timestamp, help="filed at or after (ISO 8601)")
    stats.add_argument("--end", type=_timestamp, help="filed before (ISO 8601)")
    _server_arguments(stats)

    contacts = commands.add_parser("contacts", help="the member directory: names, roles and contact points")
    _server_arguments(contacts)
    set_contacts = commands.add_parser("set-contacts", help="replace a member's contact points (role admin)")
    set_contacts.add_argument("member_id")
    set_contacts.add_argument(
        "--contact", type=_contact_point, action="append", default=[], help="NAME|ROLE|EMAIL|PHONE; repeat for several"
    )
    _server_arguments(set_contacts)

    audit = commands.add_parser("audit", help="the audit trail of mutating calls, one page (roles admin, authority)")
    audit.add_argument("--member", default="", help="only this caller: mem_N or offline")
    audit.add_argument(
        "--method", default="", help="only this full method, e.g. /hashshare.v1.SubmissionService/Submit"
    )
    audit.add_argument("--since", type=_timestamp)
    audit.add_argument("--until", type=_timestamp)
    audit.add_argument("--page-size", type=int, default=0)
    audit.add_argument("--page-token", default="")
    _server_arguments(audit)


def _run_notices(args: argparse.Namespace, client: Client) -> Any:
    if args.command == "contacts":
        return {"members": client.contact_points()}
    if args.command == "set-contacts":
        return client.set_contact_points(args.member_id, args.contact)
    if args.command == "audit":
        return client.audit_events(
            member_id=args.member,
            method=args.method,
            since=args.since,
            until=args.until,
            page_size=args.page_size,
            page_token=args.page_token,
        )
    if args.notice_command == "file":
        return client.file_notice(
            args.platform,
            _signals(args),
            category=args.category,
            content_reference=args.content_ref,
            legal_basis=args.legal_basis,
            legal_reference=args.legal_ref,
            description=args.description,
            request_id=args.request_id,
        )
    if args.notice_command == "answer":
        return client.answer_notice(
            args.notice_id, args.decision, reason=args.reason, removed_at=args.removed_at, request_id=args.request_id
        )
    if args.notice_command == "show":
        return client.get_notice(args.notice_id)
    if args.notice_command == "list":
        return client.list_notices(
            platform_id=args.platform, state=args.state, page_size=args.page_size, page_token=args.page_token
        )
    return {"platforms": client.notice_stats(start=args.start, end=args.end)}


def _report(args: argparse.Namespace) -> dict[str, Any]:
    try:
        from .report import Quarter, write_report
    except ImportError as exc:  # matplotlib comes with the `report` extra
        raise HashshareError(f"`hashshare report` needs: pip install 'hashshare-client[report]' ({exc})") from exc
    try:
        quarter = Quarter.parse(args.quarter)
    except ValueError as exc:
        raise HashshareError(str(exc)) from None
    with Client(args.server, args.token, timeout=args.timeout) as client:
        files = write_report(client, quarter, args.out, args.top)
    if not args.json:
        print(f"wrote the {quarter} review: " + ", ".join(str(f) for f in files))
    return {"quarter": str(quarter), "files": [str(f) for f in files]}


def _evaluate(args: argparse.Namespace) -> dict[str, Any]:
    from .evaluation import datasets, report, run

    images = datasets.images_from_folder(args.images) if args.images else []
    texts = datasets.texts_from_file(args.texts) if args.texts else []
    if args.builtin:
        images += datasets.builtin_images()
        texts += datasets.builtin_texts()
    images, texts = images[: args.limit_images or None], texts[: args.limit_texts or None]
    if not images and not texts:
        raise HashshareError("nothing to evaluate: give --images, --texts or --builtin")
    prepared = run.prepare(images, texts)
    results: dict[str, Any] = {
        "originals": {"image": len(prepared.images), "text": len(prepared.texts)},
        "dropped": {reason: len(names) for reason, names in prepared.dropped.items()},
        "signals": run.analyse_signals(prepared),
    }
    if not args.local_only:
        with Client(args.server, args.token, timeout=args.timeout) as client:
            results["server"] = run.run_server(prepared, client, args.category)
    args.out.mkdir(parents=True, exist_ok=True)
    report.write_json(results, args.out / "eval.json")
    charts = report.write_charts(results, args.out)
    if not args.json:
        print(f"originals: {results['originals']}, dropped: {results['dropped']}")
        print(report.table(results))
        print(f"\nwrote {args.out / 'eval.json'}, " + ", ".join(str(c) for c in charts))
    return results


def _signals(args: argparse.Namespace) -> list[Signal]:
    if args.image is not None:
        return signals.from_image(args.image)
    if args.text is not None:
        return signals.from_text(args.text)
    if args.text_file == "-":
        return signals.from_text(sys.stdin.read())
    try:
        with open(args.text_file, encoding="utf-8") as file:
            return signals.from_text(file.read())
    except (OSError, UnicodeDecodeError) as exc:
        raise HashshareError(f"cannot read {args.text_file}: {exc}") from exc


def _print_match(result: MatchResult) -> None:
    print(f"verdict: {result.verdict}")
    for match in result.matches:
        print(
            f"  {match.entry_id}  {match.verdict:<6}  {match.category}  via {match.signal_type}"
            f" (distance {match.distance}, similarity {match.similarity:.3f}), corroborations {match.corroborations}"
            + (f", held: {', '.join(match.held_reasons)}" if match.held_reasons else "")
        )
    for skipped in result.skipped:
        print(f"  skipped {skipped.signal_type}: {skipped.reason}")


def _run(args: argparse.Namespace) -> Any:
    """Do the command; return what to print as JSON (and as text if no printer)."""
    if args.command == "eval":
        return _evaluate(args)
    if args.command == "report":
        return _report(args)
    if args.command == "hash":
        found = _signals(args)
        if not args.json:
            for signal in found:
                quality = f"  quality {signal.quality}" if signal.quality is not None else ""
                print(f"{signal.type}\t{signal.version}\t{signal.hex}{quality}")
        return {"signals": [s.to_dict() for s in found]}
    with Client(args.server, args.token, timeout=args.timeout) as client:
        if args.command == "match":
            result = client.match(_signals(args))
            if not args.json:
                _print_match(result)
            return result
        if args.command == "submit":
            return client.submit(
                _signals(args),
                category=args.category,
                legal_basis=args.legal_basis,
                discovery_method=args.discovery,
                notice_reference=args.notice_ref,
                notice_received_at=args.notice_received_at,
                removed_at=args.removed_at,
                request_id=args.request_id,
            )
        if args.command == "retract":
            return client.retract(args.entry_id, reason=args.reason)
        if args.command == "entry":
            return client.get_entry(args.entry_id)
        if args.command == "spread":
            return client.spread(args.entry_id)
        if args.command in ("notice", "contacts", "set-contacts", "audit"):
            return _run_notices(args, client)
        if args.command == "feedback":
            return client.give_feedback(args.entry_id, args.opinion, reason=args.reason, comment=args.comment)
        if args.command == "review":
            return client.review_entry(args.entry_id, args.decision, reason=args.reason)
        if args.command == "allow":
            return client.add_to_allow_list(_signals(args), label=args.label)
        if args.command == "disallow":
            client.remove_from_allow_list(args.allow_id, reason=args.reason)
            return {"allow_id": args.allow_id, "removed": True}
        if args.command == "allow-list":
            return {"items": client.list_allow_list()}
        if args.command == "feedback-stats":
            return {"platforms": client.feedback_stats(start=args.since, end=args.until)}
        return {"categories": client.categories()}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = _run(args)
    except ApiError as error:
        print(f"hashshare: {error}", file=sys.stderr)
        return 1
    except HashshareError as error:
        print(f"hashshare: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(to_jsonable(result), ensure_ascii=False, indent=2))
    elif args.command not in ("hash", "match", "eval", "report"):
        _print_record(to_jsonable(result))
    return 0


def _print_record(record: Any, indent: str = "") -> None:
    if isinstance(record, dict):
        for key, value in record.items():
            if isinstance(value, (dict, list)) and value:
                print(f"{indent}{key}:")
                _print_record(value, indent + "  ")
            else:
                print(f"{indent}{key}: {value}")
    elif isinstance(record, list):
        for item in record:
            if isinstance(item, dict):
                print(f"{indent}-")
                _print_record(item, indent + "  ")
            else:
                print(f"{indent}- {item}")


if __name__ == "__main__":
    sys.exit(main())
