"""The two command-line tools, run as real processes against a real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from hashshare.api.server import RunningServer
from hashshare_client import Client
from tests.conftest import ServerFactory, encode, free_port, new_member, wait_serving

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


def run(tool: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / tool), *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def test_server_admin_creates_a_member_and_prints_its_token_as_json(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'bank.db'}"
    done = run(
        "hashshare-server", "admin", "create-member", "Platform B", "--role", "platform", "--store", store, "--json"
    )
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    assert created["member_id"].startswith("mem_") and created["token"].startswith("hs_")
    listed = json.loads(run("hashshare-server", "admin", "list-members", "--store", store, "--json").stdout)
    assert [m["name"] for m in listed] == ["Platform B"]
    issued = json.loads(
        run("hashshare-server", "admin", "issue-token", "Platform B", "--store", store, "--json").stdout
    )
    assert issued["token"] != created["token"]
    revoked = run("hashshare-server", "admin", "revoke-token", issued["token_id"], "--store", store, "--json")
    assert json.loads(revoked.stdout) == {"token_id": issued["token_id"], "revoked": True}
    refused = run("hashshare-server", "admin", "create-member", "X", "--role", "king", "--store", store)
    assert refused.returncode == 2 and "unknown role 'king'" in refused.stderr


def test_client_cli_submits_matches_and_retracts(
    server_factory: ServerFactory, photos: dict[str, Image.Image], tmp_path: Path
) -> None:
    server: RunningServer = server_factory()
    original, copy = tmp_path / "original.png", tmp_path / "copy.jpg"
    original.write_bytes(encode(photos["chelsea"]))
    copy.write_bytes(encode(photos["chelsea"].resize((300, 200)), "JPEG", quality=40))
    ts = {"HASHSHARE_SERVER": f"127.0.0.1:{server.port}", "HASHSHARE_TOKEN": new_member(server, "ts", "trust_safety")}
    platform = {**ts, "HASHSHARE_TOKEN": new_member(server, "p", "platform")}

    submitted = run(
        "hashshare",
        "--json",
        "submit",
        "--image",
        str(original),
        "--category",
        "hate_speech",
        "--legal-basis",
        "local_law",
        "--discovery",
        "authority_notice",
        "--notice-ref",
        "N-2026-17",
        "--notice-received-at",
        "2026-11-27T08:00:00+07:00",
        env=ts,
    )
    assert submitted.returncode == 0, submitted.stderr
    entry_id = json.loads(submitted.stdout)["entry_id"]

    matched = json.loads(run("hashshare", "--json", "match", "--image", str(copy), env=platform).stdout)
    assert matched["verdict"] == "BLOCK" and matched["matches"][0]["entry_id"] == entry_id
    text_match = json.loads(run("hashshare", "--json", "match", "--text", "không liên quan gì cả", env=platform).stdout)
    assert text_match == {**text_match, "verdict": "NONE", "matches": []}
    human = run("hashshare", "match", "--image", str(copy), env=platform)
    assert "verdict: BLOCK" in human.stdout and entry_id in human.stdout

    entry = json.loads(run("hashshare", "--json", "entry", entry_id, env=ts).stdout)
    assert entry["submissions"][0]["notice_reference"] == "N-2026-17"
    assert entry["submissions"][0]["notice_received_at"] == "2026-11-27T01:00:00+00:00"

    retracted = json.loads(run("hashshare", "--json", "retract", entry_id, "--reason", "test", env=ts).stdout)
    assert retracted == {"entry_id": entry_id, "retracted_submissions": 1, "entry_active": False}
    assert (
        json.loads(run("hashshare", "--json", "match", "--image", str(copy), env=platform).stdout)["verdict"] == "NONE"
    )


def test_client_cli_hashes_offline_and_reports_errors(tmp_path: Path) -> None:
    hashed = json.loads(run("hashshare", "--json", "hash", "--text", "Xin chào").stdout)
    assert [s["type"] for s in hashed["signals"]] == ["text/minhash"]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really")
    refused = run("hashshare", "hash", "--image", str(broken))
    assert refused.returncode == 2 and "not a readable image" in refused.stderr
    offline = run(
        "hashshare", "match", "--text", "x", "--server", f"127.0.0.1:{free_port()}", "--token", "t", "--timeout", "2"
    )
    assert offline.returncode == 1 and "UNAVAILABLE" in offline.stderr


def test_bad_token_exits_nonzero_with_the_reason(server_factory: ServerFactory) -> None:
    server = server_factory()
    done = run("hashshare", "match", "--text", "x", "--server", f"127.0.0.1:{server.port}", "--token", "hs_bad")
    assert done.returncode == 1 and "UNAUTHENTICATED" in done.stderr


def test_reflection_lists_every_service(server_factory: ServerFactory) -> None:
    server = server_factory()
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        response = next(stub.ServerReflectionInfo(iter([request])))
    names = {s.name for s in response.list_services_response.service}
    assert {
        "hashshare.v1.MatchService",
        "hashshare.v1.SubmissionService",
        "hashshare.v1.ResearchService",
        "hashshare.v1.AdminService",
        "grpc.health.v1.Health",
    } <= names


def test_make_serve_starts_a_healthy_server_with_a_dev_admin_token(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        ["make", "serve", f"LISTEN=127.0.0.1:{port}", f"VAR={tmp_path}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_serving(f"127.0.0.1:{port}", timeout=120)
        token = (tmp_path / "admin.token").read_text().strip()
        assert (tmp_path / "admin.token").stat().st_mode & 0o777 == 0o600
        with Client(f"127.0.0.1:{port}", token) as client:
            assert "hate_speech" in {c.id for c in client.categories()}
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            output = process.communicate(timeout=90)[0].decode()
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output = process.communicate()[0].decode()
            raise AssertionError(f"make serve did not stop within 90 s of SIGTERM:\n{output[-3000:]}") from None
    assert "development admin token written to" in output
