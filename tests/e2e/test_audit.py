"""The audit trail end to end: calls through a running server, read back
with ListAuditEvents, checked by `hashshare-server admin verify-audit`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from PIL import Image

from hashshare import audit
from hashshare.store.sqlite import sqlite_path_from_url
from hashshare_client import Client, InvalidArgumentError, NotFoundError, PermissionDeniedError, signals
from tests.conftest import ServerFactory, encode, new_member

BIN = Path(sys.executable).parent
SUBMIT = "/hashshare.v1.SubmissionService/Submit"
RETRACT = "/hashshare.v1.SubmissionService/Retract"
SECRET_REASON = "the uploader is a known repeat offender"


def verify_audit(store_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hashshare-server"), "admin", "verify-audit", "--store", store_url, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def tamper(store_url: str, sequence: int, field: str, value: str) -> None:
    """Edit one stored audit event directly in the store, as an intruder would."""
    if store_url.startswith("sqlite"):
        with sqlite3.connect(sqlite_path_from_url(store_url)) as db:
            db.execute(f"UPDATE audit_events SET {field} = ? WHERE seq = ?", (value, sequence))
        return
    client = redis.Redis.from_url(store_url)
    try:
        record = json.loads(client.hget("hs:{audit}:events", str(sequence)))  # type: ignore[arg-type]
        client.hset("hs:{audit}:events", str(sequence), json.dumps({**record, field: value}))
    finally:
        client.close()


def test_every_mutating_call_is_audited_failures_too_and_tampering_is_detected(
    server_factory: ServerFactory, store_url: str, photos: dict[str, Image.Image]
) -> None:
    server = server_factory(store_url)
    target = f"127.0.0.1:{server.port}"
    admin_token = new_member(server, "Operator", "admin")
    ts_token = new_member(server, "Platform A", "trust_safety", "platform")
    platform_token = new_member(server, "Platform B", "platform")
    members = {m.name: f"mem_{m.member_id}" for m in server.bank.store.list_members()}
    image_signals = signals.from_image(encode(photos["coffee"]))
    with (
        Client(target, ts_token) as ts,
        Client(target, platform_token) as platform,
        Client(target, admin_token) as admin,
    ):
        submitted = ts.submit(image_signals, category="hate_speech", request_id="sub-1")  # OK
        with pytest.raises(InvalidArgumentError):
            ts.submit(image_signals, category="no_such_category", request_id="sub-2")
        with pytest.raises(NotFoundError):
            ts.retract("ent_999", reason=SECRET_REASON, request_id="ret-1")
        with pytest.raises(PermissionDeniedError):
            platform.submit(image_signals, category="hate_speech", request_id="sub-3")
        ts.retract(submitted.entry_id, reason=SECRET_REASON, request_id="ret-2")  # OK
        platform.match(image_signals)  # read-only: not audited
        admin.set_contact_points(members["Platform A"], [])

        page = admin.audit_events()
        events = page.events
        assert page.next_page_token == ""
        rows = [(e.member_id, e.method, e.request_id, e.target, e.result) for e in events]
        assert rows == [
            (members["Platform A"], SUBMIT, "sub-1", submitted.entry_id, "OK"),
            (members["Platform A"], SUBMIT, "sub-2", "", "INVALID_ARGUMENT"),
            (members["Platform A"], RETRACT, "ret-1", "ent_999", "NOT_FOUND"),
            (members["Platform B"], SUBMIT, "sub-3", "", "PERMISSION_DENIED"),
            (members["Platform A"], RETRACT, "ret-2", submitted.entry_id, "OK"),
            (
                members["Operator"],
                "/hashshare.v1.AdminService/SetContactPoints",
                events[5].request_id,
                members["Platform A"],
                "OK",
            ),
        ]
        assert [e.sequence for e in events] == [1, 2, 3, 4, 5, 6]
        assert events[0].roles == ("platform", "trust_safety") and events[0].at is not None
        stored = len(image_signals_stored(image_signals))
        assert events[0].detail == f"signals={stored} category=hate_speech legal_basis=LEGAL_BASIS_COMMUNITY_GUIDELINES"
        # Content-free: no reason, hash or token reaches the trail.
        text = json.dumps([e.detail + e.target + e.request_id for e in events])
        assert SECRET_REASON not in text and image_signals[0].hex not in text and "hs_" not in text

        # Paging and filters.
        first = admin.audit_events(page_size=4)
        second = admin.audit_events(page_size=4, page_token=first.next_page_token)
        assert [e.sequence for e in first.events + second.events] == [1, 2, 3, 4, 5, 6] and not second.next_page_token
        assert [e.sequence for e in admin.audit_events(method=RETRACT).events] == [3, 5]
        assert [e.sequence for e in admin.audit_events(member_id=members["Platform B"]).events] == [4]
        since, until = events[2].at, events[4].at
        assert [e.sequence for e in admin.audit_events(since=since, until=until).events] == [3, 4]
        with pytest.raises(PermissionDeniedError):
            ts.audit_events()
        with pytest.raises(InvalidArgumentError):
            admin.audit_events(page_token="bm90LWEtdG9rZW4")

    # An offline admin command is audited as "offline"; then the whole chain holds.
    created = subprocess.run(
        [
            str(BIN / "hashshare-server"),
            "admin",
            "create-member",
            "Platform C",
            "--role",
            "platform",
            "--store",
            store_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    offline = server.bank.store.list_audit(0, 100, None)[-1]
    assert (offline.sequence, offline.draft.member, offline.draft.result) == (7, "offline", "OK")
    assert offline.draft.method == "hashshare-server admin create-member" and offline.draft.detail == "roles=platform"
    intact = verify_audit(store_url)
    assert intact.returncode == 0 and json.loads(intact.stdout)["checked"] == 7

    # An intruder turns the failed retract into a success: detected there, by both checks.
    tamper(store_url, 3, "result", "OK")
    broken = verify_audit(store_url)
    assert broken.returncode == 1
    report = json.loads(broken.stdout)
    assert (report["ok"], report["broken_at"], report["checked"]) == (False, 3, 2)
    assert audit.verify(audit.all_events(server.bank.store)).broken_at == 3
    text_report = subprocess.run(
        [str(BIN / "hashshare-server"), "admin", "verify-audit", "--store", store_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert text_report.returncode == 1 and "broken at event 3" in text_report.stderr


def image_signals_stored(found: list[signals.Signal]) -> list[signals.Signal]:
    """The signals the SDK sends with a Submit (the stored views only)."""
    from hashshare_client.signal_types import view

    return [s for s in found if (v := view(s.variant)) is not None and v.stored]


def test_concurrent_calls_from_two_server_processes_keep_one_linear_chain(
    server_processes: object, tmp_path: Path
) -> None:
    from collections.abc import Callable
    from concurrent.futures import ThreadPoolExecutor

    from tests.conftest import ServerProcess, new_member_in

    store_url = f"sqlite:///{tmp_path / 'bank.db'}"
    token = new_member_in(store_url, "Platform A", "trust_safety", "platform")
    factory: Callable[..., ServerProcess] = server_processes  # type: ignore[assignment]
    servers = [factory(store_url).start(), factory(store_url).start()]
    texts = [f"Bọn chúng không xứng đáng sống ở đây, câu số {n}, hãy đuổi hết chúng đi khỏi làng" for n in range(40)]

    def submit(n: int) -> None:
        with Client(servers[n % 2].target, token) as client:
            client.submit(signals.from_text(texts[n]), category="hate_speech", request_id=f"c-{n}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(submit, range(40)))
    done = verify_audit(store_url)
    report = json.loads(done.stdout)
    assert done.returncode == 0 and report["checked"] == 40
