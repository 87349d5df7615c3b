"""Trust and safety from the command line: `hashshare-server admin` trust levels
and flags, and the `hashshare` commands for feedback, review and the allow-list."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from hashshare.api.server import RunningServer
from tests.conftest import ServerFactory, encode, new_member
from tests.e2e.test_cli import run


def test_server_admin_sets_trust_levels_and_clears_flags(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'bank.db'}"
    created = run(
        "hashshare-server", "admin", "create-member", "Platform A", "--role", "trust_safety", "--store", store, "--json"
    )
    assert created.returncode == 0, created.stderr
    assert json.loads(created.stdout)["trust_level"] == "provisional"  # secure by default
    vetted = json.loads(
        run(
            "hashshare-server", "admin", "create-member", "Platform B", "--role", "platform",
            "--trust-level", "trusted", "--store", store, "--json",
        ).stdout
    )  # fmt: skip
    assert vetted["trust_level"] == "trusted"

    promoted = run("hashshare-server", "admin", "set-trust", "Platform A", "trusted", "--store", store, "--json")
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["trust_level"] == "trusted"
    listed = run("hashshare-server", "admin", "list-members", "--store", store)
    assert "Platform A\ttrust_safety\ttrusted" in listed.stdout
    cleared = json.loads(
        run("hashshare-server", "admin", "clear-flag", "Platform A", "--store", store, "--json").stdout
    )
    assert cleared["flagged"] is False

    refused = run("hashshare-server", "admin", "set-trust", "Platform A", "royal", "--store", store)
    assert refused.returncode == 2 and "unknown trust level 'royal'" in refused.stderr


def test_client_cli_gives_feedback_reviews_and_manages_the_allow_list(
    server_factory: ServerFactory, photos: dict[str, Image.Image], tmp_path: Path
) -> None:
    server: RunningServer = server_factory()
    photo, copy = tmp_path / "photo.png", tmp_path / "copy.jpg"
    photo.write_bytes(encode(photos["coffee"]))
    copy.write_bytes(encode(photos["coffee"].resize((300, 200)), "JPEG", quality=40))
    address = {"HASHSHARE_SERVER": f"127.0.0.1:{server.port}"}
    ts = {**address, "HASHSHARE_TOKEN": new_member(server, "ts", "trust_safety", "platform")}
    other = {**address, "HASHSHARE_TOKEN": new_member(server, "other", "trust_safety", "platform")}
    authority = {**address, "HASHSHARE_TOKEN": new_member(server, "authority", "authority")}

    entry_id = json.loads(
        run("hashshare", "--json", "submit", "--image", str(photo), "--category", "hate_speech", env=ts).stdout
    )["entry_id"]
    given = json.loads(
        run("hashshare", "--json", "feedback", entry_id, "disagree", "--reason", "lawful", env=other).stdout
    )
    assert (given["disputes"], given["verdict"]) == (1, "BLOCK")
    confirmed = json.loads(run("hashshare", "--json", "review", entry_id, "confirm", env=authority).stdout)
    assert (confirmed["confirmed"], confirmed["last_review"], confirmed["disputes"]) == (True, "confirm", 1)

    allowed = json.loads(
        run("hashshare", "--json", "allow", "--image", str(photo), "--label", "stock photo", env=authority).stdout
    )
    held = run("hashshare", "match", "--image", str(copy), env=ts)
    # A reviewer's confirmation does not outweigh the allow-list.
    assert "verdict: REVIEW" in held.stdout and "held: allow_listed" in held.stdout
    listed = json.loads(run("hashshare", "--json", "allow-list", env=ts).stdout)
    assert [i["allow_id"] for i in listed["items"]] == [allowed["allow_id"]]
    removed = run("hashshare", "disallow", allowed["allow_id"], "--reason", "licence expired", env=authority)
    assert removed.returncode == 0, removed.stderr
    assert json.loads(run("hashshare", "--json", "match", "--image", str(copy), env=ts).stdout)["verdict"] == "BLOCK"
