"""The `hashshare` commands for notices, the directory and the audit trail,
run as real processes against a real server."""

from __future__ import annotations

import json

from hashshare.api.server import RunningServer
from tests.conftest import ServerFactory, new_member
from tests.e2e.test_cli import run

TEXT = "Bọn chúng không xứng đáng sống ở đây, hãy đuổi hết chúng ra khỏi làng này ngay hôm nay"


def cli(server: RunningServer, token: str, *args: str) -> dict[str, object]:
    done = run("hashshare", "--json", *args, "--server", f"127.0.0.1:{server.port}", "--token", token)
    assert done.returncode == 0, done.stderr
    parsed: dict[str, object] = json.loads(done.stdout)
    return parsed


def test_authority_files_platform_answers_and_admin_reads_the_audit_from_the_command_line(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    admin = new_member(server, "Operator", "admin")
    authority = new_member(server, "Ministry", "authority")
    platform = new_member(server, "Platform A", "trust_safety", "platform")
    platform_id = next(f"mem_{m.member_id}" for m in server.bank.store.list_members() if m.name == "Platform A")

    contacts = cli(server, admin, "set-contacts", platform_id, "--contact", "Desk|trust_safety|desk@a.test|")
    assert contacts["contact_points"] == [{"name": "Desk", "role": "trust_safety", "email": "desk@a.test", "phone": ""}]
    filed = cli(
        server, authority, "notice", "file", "--text", TEXT, "--platform", platform_id,
        "--category", "hate_speech", "--content-ref", "https://a.test/p/1", "--legal-ref", "Decree 72/2013, Art. 5",
    )  # fmt: skip
    assert filed["state"] == "open" and filed["routed_to"] == contacts["contact_points"]
    listed = cli(server, platform, "notice", "list")
    assert [n["notice_id"] for n in listed["notices"]] == [filed["notice_id"]]  # type: ignore[index]
    answered = cli(server, platform, "notice", "answer", str(filed["notice_id"]), "--decision", "removed")
    assert answered["state"] == "removed" and str(answered["entry_id"]).startswith("ent_")
    assert cli(server, platform, "match", "--text", TEXT)["verdict"] == "BLOCK"
    directory = cli(server, platform, "contacts")
    assert {m["name"] for m in directory["members"]} == {"Operator", "Ministry", "Platform A"}  # type: ignore[index]
    audit = cli(server, admin, "audit", "--page-size", "2")
    assert [e["method"].rsplit("/", 1)[-1] for e in audit["events"]] == ["SetContactPoints", "FileNotice"]  # type: ignore[index]
    assert audit["next_page_token"]
    rest = cli(server, admin, "audit", "--page-token", str(audit["next_page_token"]))
    assert [e["method"].rsplit("/", 1)[-1] for e in rest["events"]] == ["AnswerNotice"]  # type: ignore[index]

    refused = run(
        "hashshare", "notice", "answer", str(filed["notice_id"]), "--decision", "rejected",
        "--server", f"127.0.0.1:{server.port}", "--token", platform,
    )  # fmt: skip
    assert refused.returncode == 1 and "reason" in refused.stderr
