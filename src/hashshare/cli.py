"""``hashshare-server``: run the server and administer members offline."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import audit, bankfile, members, settings
from .errors import HashshareError
from .model import AuditDraft, IdKind, Member, TrustLevel, format_id, parse_id
from .store import open_store
from .store.base import Store

DEFAULT_STORE = settings.Settings().store


def _member_json(member: Member) -> dict[str, object]:
    return {
        "member_id": format_id(IdKind.MEMBER, member.member_id),
        "name": member.name,
        "roles": sorted(r.value for r in member.roles),
        "trust_level": member.trust_level.value,
        "flagged": member.flagged,
        "flag_reason": member.flag_reason,
    }


def _resolve_member(store: Store, text: str) -> Member:
    if text.startswith(IdKind.MEMBER.value + "_"):
        member = store.get_member(parse_id(IdKind.MEMBER, text, "member"))
        if member is None:
            raise HashshareError(f"no member {text}")
        return member
    return members.find_member(store, text)


def _verify_audit(store: Store, as_json: bool) -> int:
    result = audit.verify(audit.all_events(store))
    if as_json:
        print(
            json.dumps(
                {
                    "ok": result.ok,
                    "checked": result.checked,
                    "head_hash": result.head_hash,
                    "broken_at": result.broken_at,
                    "problem": result.problem,
                }
            )
        )
    elif result.ok:
        print(f"audit trail intact: {result.checked} events, head {result.head_hash}")
    else:
        print(
            f"audit trail broken at event {result.broken_at}: {result.problem} "
            f"({result.checked} events before it are intact)",
            file=sys.stderr,
        )
    return 0 if result.ok else 1


# What an offline command did, for the audit trail: (target, detail).
_OFFLINE_AUDITED = ("create-member", "issue-token", "revoke-token", "set-trust", "clear-flag")


def _audit_offline(store: Store, command: str, target: str, detail: str, result: str) -> None:
    draft = AuditDraft(
        audit.event_time(time.time()),
        audit.OFFLINE,
        (),
        f"hashshare-server admin {command}",
        "",
        target,
        result,
        detail,
    )
    store.append_audit([draft])


def _admin(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        if args.admin_command == "verify-audit":
            return _verify_audit(store, args.json)
        if args.admin_command not in _OFFLINE_AUDITED:
            return _admin_command(store, args)
        try:
            code = _admin_command(store, args)
        except HashshareError as error:
            _audit_offline(store, args.admin_command, "", "", error.code)
            raise
        return code
    finally:
        store.close()


def _admin_command(store: Store, args: argparse.Namespace) -> int:
    now = time.time()
    if args.admin_command == "create-member":
        level = members.trust_level(args.trust_level, "--trust-level")
        member, token, secret = members.create_member(store, args.name, args.role, now, level)
        out = {**_member_json(member), "token": secret, "token_id": format_id(IdKind.TOKEN, token.token_id)}
        roles = ",".join(sorted(r.value for r in member.roles))
        _audit_offline(store, args.admin_command, str(out["member_id"]), f"roles={roles}", "OK")
        text = f"created {out['member_id']} {member.name!r} ({level}); its token (shown once):\n{secret}"
    elif args.admin_command == "set-trust":
        member = _resolve_member(store, args.member)
        member = store.set_trust_level(member.member_id, members.trust_level(args.level, "level"))
        out = _member_json(member)
        text = f"{out['member_id']} {member.name!r} is now {member.trust_level}"
        _audit_offline(store, args.admin_command, str(out["member_id"]), f"trust={member.trust_level}", "OK")
    elif args.admin_command == "clear-flag":
        member = store.clear_flag(_resolve_member(store, args.member).member_id)
        out = _member_json(member)
        text = f"{out['member_id']} {member.name!r} is not flagged"
        _audit_offline(store, args.admin_command, str(out["member_id"]), "", "OK")
    elif args.admin_command == "issue-token":
        member = _resolve_member(store, args.member)
        token, secret = members.issue_token(store, member.member_id, args.role, now)
        out = {
            "member_id": format_id(IdKind.MEMBER, member.member_id),
            "token": secret,
            "token_id": format_id(IdKind.TOKEN, token.token_id),
        }
        text = f"new token {out['token_id']} for {member.name!r} (shown once):\n{secret}"
        _audit_offline(store, args.admin_command, str(out["token_id"]), f"member={out['member_id']}", "OK")
    elif args.admin_command == "revoke-token":
        token, _ = store.revoke_token(parse_id(IdKind.TOKEN, args.token_id, "token_id"), now)
        out = {"token_id": format_id(IdKind.TOKEN, token.token_id), "revoked": True}
        text = f"revoked {out['token_id']}"
        _audit_offline(store, args.admin_command, str(out["token_id"]), "", "OK")
    else:  # list-members
        listed = store.list_members()
        if args.json:
            print(json.dumps([_member_json(m) for m in listed], indent=2))
        else:
            for m in listed:
                flag = f"\tflagged: {m.flag_reason}" if m.flagged else ""
                roles = ",".join(sorted(m.roles))
                print(f"{format_id(IdKind.MEMBER, m.member_id)}\t{m.name}\t{roles}\t{m.trust_level}{flag}")
        return 0
    print(json.dumps(out) if args.json else text)
    return 0


def _import(args: argparse.Namespace) -> int:
    from hashshare_client import DiscoveryMethod, LegalBasis

    from .taxonomy import Taxonomy

    store = open_store(args.store)
    try:
        report = bankfile.import_file(
            store,
            Path(args.file),
            args.member,
            file_format=args.format,
            signal_type=args.type,
            category=args.category,
            legal_basis=LegalBasis(args.legal_basis),
            discovery_method=DiscoveryMethod(args.discovery_method),
            taxonomy=Taxonomy.from_file(args.taxonomy) if args.taxonomy else None,
            strict=args.strict,
        )
    finally:
        store.close()
    print(json.dumps(report.to_json()) if args.json else report.summary())
    if not report.written:
        return 2
    return 1 if report.errors else 0


def _export(args: argparse.Namespace) -> int:
    store = open_store(args.store)
    try:
        if args.file == "-":
            count = bankfile.export_file(store, sys.stdout, file_format=args.format, signal_type=args.type)
        else:
            with open(args.file, "w", encoding="utf-8") as out:
                count = bankfile.export_file(store, out, file_format=args.format, signal_type=args.type)
    finally:
        store.close()
    what = "entries" if args.format == "jsonl" else "hashes"
    print(f"exported {count} {what} to {args.file}", file=sys.stderr)
    return 0


def _current_quarter() -> str:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return f"{now.year}Q{(now.month - 1) // 3 + 1}"


def _demo_seed(args: argparse.Namespace) -> int:
    from . import demo

    quarter = args.quarter or _current_quarter()
    store = open_store(args.store)
    try:
        bank = demo.seed(store, quarter, args.entries)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"quarter": quarter, **dataclasses.asdict(bank)}))
    else:
        print(demo.summary(bank))
    return 0


def _demo_report(args: argparse.Namespace) -> int:
    """Seed a temporary store, serve it on a free port, run `hashshare report` on it."""
    import tempfile

    from hashshare_client import cli as client_cli

    from . import demo
    from .api.server import start

    quarter = args.quarter or _current_quarter()
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{scratch}/demo.db"
        store = open_store(url)
        try:
            bank = demo.seed(store, quarter, args.entries)
        finally:
            store.close()
        running = start(settings.Settings(listen="127.0.0.1:0", store=url))
        try:
            target = ["--server", f"127.0.0.1:{running.port}", "--token", bank.researcher_token]
            return client_cli.main(["report", "--quarter", quarter, "--out", args.out, *target])
        finally:
            running.stop(grace=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashshare-server", description="The hashshare hash-sharing server.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC server")
    settings.add_arguments(serve)

    admin = commands.add_parser("admin", help="manage members and tokens directly in the store")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)

    def admin_command(name: str, help: str) -> argparse.ArgumentParser:
        sub = admin_commands.add_parser(name, help=help)
        sub.add_argument("--store", default=DEFAULT_STORE, help=f"store URL (default {DEFAULT_STORE})")
        sub.add_argument("--json", action="store_true", help="print JSON")
        return sub

    create = admin_command("create-member", "create a member and print its first token")
    create.add_argument("name")
    create.add_argument(
        "--role",
        action="append",
        required=True,
        help="platform, trust_safety, researcher, admin or authority; repeat for several",
    )
    create.add_argument(
        "--trust-level",
        default=TrustLevel.PROVISIONAL.value,
        help="provisional (default: its submissions alone never block) or trusted",
    )
    trust = admin_command("set-trust", "set a member's trust level (its entries' verdicts follow at once)")
    trust.add_argument("member", help="member id (mem_N) or name")
    trust.add_argument("level", help="provisional or trusted")
    unflag = admin_command("clear-flag", "clear the flag a member got for submitting too fast")
    unflag.add_argument("member", help="member id (mem_N) or name")
    issue = admin_command("issue-token", "print a new token for a member")
    issue.add_argument("member", help="member id (mem_N) or name")
    issue.add_argument("--role", action="append", default=[], help="restrict the token to these roles")
    revoke = admin_command("revoke-token", "revoke a token at once, on every server")
    revoke.add_argument("token_id", help="tok_N")
    admin_command("list-members", "list members and their roles")
    admin_command("verify-audit", "check the audit trail's hash chain; exit 1 naming the first broken event")

    importing = commands.add_parser(
        "import", help="import a bank file (JSONL or a hash list) straight into a store; see hashshare.bankfile"
    )
    importing.add_argument("file", help="the file to read")
    importing.add_argument("--store", default=DEFAULT_STORE, help=f"store URL (default {DEFAULT_STORE})")
    importing.add_argument("--member", required=True, help="member id (mem_N) or name the submissions belong to")
    importing.add_argument("--format", default="jsonl", choices=bankfile.FORMATS, help="jsonl (default) or hashlist")
    importing.add_argument("--type", help="hash lists: the signal type of every line, e.g. image/pdq or exact/md5")
    importing.add_argument("--category", help="hash lists: the category of every line; JSONL: lines without one")
    importing.add_argument("--legal-basis", default="community_guidelines", help="where a line does not say")
    importing.add_argument("--discovery-method", default="unspecified", help="where a line does not say")
    importing.add_argument("--taxonomy", help="JSON file of categories, as `serve --taxonomy`")
    importing.add_argument("--strict", action="store_true", help="import nothing when any line is bad")
    importing.add_argument("--json", action="store_true", help="print the report as JSON")

    exporting = commands.add_parser("export", help="write a store's active entries to a bank file")
    exporting.add_argument("file", help="the file to write ('-' for standard output)")
    exporting.add_argument("--store", default=DEFAULT_STORE, help=f"store URL (default {DEFAULT_STORE})")
    exporting.add_argument("--format", default="jsonl", choices=bankfile.FORMATS, help="jsonl (default) or hashlist")
    exporting.add_argument("--type", help="hash lists: which signal type to write, e.g. image/pdq")

    demo = commands.add_parser(
        "demo-seed", help="fill a store with a made-up bank to try `hashshare report` on (see hashshare.demo)"
    )
    demo.add_argument("--store", default=DEFAULT_STORE, help=f"store URL (default {DEFAULT_STORE})")
    demo.add_argument("--quarter", help="the quarter to fill, with the one before it (default: the current one)")
    demo.add_argument("--entries", type=int, default=60, help="entries per quarter")
    demo.add_argument("--json", action="store_true", help="print the tokens as JSON")

    demo_report = commands.add_parser(
        "demo-report", help="seed a throwaway demo bank, serve it and write its quarterly review (`hashshare report`)"
    )
    demo_report.add_argument("--out", default="demo-report", help="folder for index.html, charts and CSVs")
    demo_report.add_argument("--quarter", help="the quarter to review (default: the current one)")
    demo_report.add_argument("--entries", type=int, default=60, help="entries per quarter")

    evaluate = commands.add_parser(
        "eval", help="run `hashshare eval` against a throwaway server on this machine (options pass through)"
    )
    evaluate.add_argument("eval_args", nargs=argparse.REMAINDER, help="e.g. --builtin --out var/eval")
    return parser


def _evaluate(eval_args: list[str]) -> int:
    """Start a server on a temporary store, give the evaluation a member, run it."""
    import tempfile

    from hashshare_client import cli as client_cli

    from .api.server import start

    with tempfile.TemporaryDirectory() as scratch:
        running = start(settings.Settings(listen="127.0.0.1:0", store=f"sqlite:///{scratch}/eval.db"))
        try:
            # Trusted: the evaluation measures matching, not the poisoning defences.
            _, _, token = members.create_member(
                running.bank.store, "evaluation", ["trust_safety", "platform"], time.time(), TrustLevel.TRUSTED
            )
            target = ["--server", f"127.0.0.1:{running.port}", "--token", token]
            return client_cli.main(["eval", *eval_args, *target])
        finally:
            running.stop(grace=0)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["eval"]:  # every option belongs to `hashshare eval`
        return _evaluate(arguments[1:])
    args = build_parser().parse_args(arguments)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "serve":
            from .api.server import serve

            serve(settings.from_arguments(args))
            return 0
        if args.command == "import":
            return _import(args)
        if args.command == "export":
            return _export(args)
        if args.command == "demo-seed":
            return _demo_seed(args)
        if args.command == "demo-report":
            return _demo_report(args)
        return _admin(args)
    except HashshareError as error:
        print(f"hashshare-server: {error.message}", file=sys.stderr)
        return 2
    except ValueError as error:
        print(f"hashshare-server: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
