"""`hashshare report` run as a real process against a real server: the files
it writes and that their figures are the API's."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from hashshare import demo
from hashshare_client import Action, ActionReport, Client, signals
from hashshare_client.report.quarter import Quarter
from tests.conftest import ServerFactory, encode, new_member
from tests.fixtures.notices import EXPECTED, seed_notices

BIN = Path(sys.executable).parent
CHARTS = ("reuploads_per_week.png", "share_blocked_per_platform.png", "notices_within_24h_per_platform.png")
PLATFORM_HEADER = [
    "notices_received",
    "share_decided_within_24h",
    "median_hours_to_decision",
    "median_hours_to_removal",
    "submissions",
    "corroborations",
    "disputes_received",
    "disputes_given",
    "reupload_attempts",
    "reuploads_blocked",
    "share_blocked",
]


def run_report(target: str, token: str, quarter: Quarter, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "hashshare"), "report", "--quarter", str(quarter), "--out", str(out), "--server", target],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HASHSHARE_TOKEN": token},
    )


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(encoding="utf-8") as file:
        rows = list(csv.reader(file))
    return rows[0], [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


def shown(value: int, suppressed: bool) -> str:
    return "suppressed" if suppressed else str(value)


def test_the_report_writes_html_charts_and_csvs_that_match_the_api(
    server_factory: ServerFactory, photos: dict[str, Image.Image], tmp_path: Path
) -> None:
    server = server_factory(research_min_count=2)
    target = f"127.0.0.1:{server.port}"
    alpha = Client(target, new_member(server, "Alpha Social", "trust_safety", "platform"))
    beta = Client(target, new_member(server, "Beta Video", "trust_safety", "platform"))
    gamma = Client(target, new_member(server, "Gamma Chat", "platform"))
    researcher_token = new_member(server, "University Lab", "researcher")
    researcher = Client(target, researcher_token)
    now = datetime.now(UTC)
    quarter = Quarter.parse(f"{now.year}Q{(now.month - 1) // 3 + 1}")
    previous = quarter.previous()
    # Times in the past and inside each quarter, whatever day the test runs.
    removed = quarter.start + (now - quarter.start) / 2
    noticed = removed - min(timedelta(hours=4), (removed - quarter.start) / 2)
    before = previous.start + timedelta(days=20)

    images = {name: signals.from_image(encode(photos[name])) for name in ("chelsea", "astronaut", "rocket")}
    hot = alpha.submit(images["chelsea"], category="hate_speech", notice_received_at=noticed, removed_at=removed)
    alpha.submit(images["astronaut"], category="violent_extremism", notice_received_at=noticed, removed_at=removed)
    assert beta.submit(images["chelsea"], category="hate_speech", removed_at=removed).joined_existing
    alpha.submit(images["rocket"], category="hate_speech", removed_at=before)
    beta.submit(images["rocket"], category="hate_speech", removed_at=before)
    copy = signals.from_image(encode(photos["chelsea"].resize((300, 200)), "JPEG", quality=40))
    for client, times in ((beta, 3), (gamma, 2)):
        for _ in range(times):
            assert client.match(copy).verdict == "BLOCK"
    acted = now - timedelta(minutes=5)
    beta.report_actions([ActionReport(hot.entry_id, Action.BLOCKED, acted, f"b{n}") for n in range(3)])
    beta.report_actions([ActionReport(hot.entry_id, Action.BLOCKED, before, f"old{n}") for n in range(2)])
    gamma.report_actions(
        [ActionReport(hot.entry_id, Action.BLOCKED, acted, "g1"), ActionReport(hot.entry_id, "sent_to_review", acted)]
    )
    deadline = time.monotonic() + 10
    while researcher.top_clusters(quarter.start, quarter.end)[:1] == [] and time.monotonic() < deadline:
        time.sleep(0.05)  # sightings are written in batches

    out = tmp_path / "review"
    done = run_report(target, researcher_token, quarter, out)
    assert done.returncode == 0, done.stderr

    page = (out / "index.html").read_text(encoding="utf-8")
    for chart in (*CHARTS, "top_clusters.png"):
        assert f'<img src="{chart}"' in page
        assert (out / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("Alpha Social", "Beta Video", "Gamma Chat", "mem_"):
        assert name not in page

    header, platforms = read_csv(out / "platforms.csv")
    assert header == [
        "platform",
        *PLATFORM_HEADER,
        *(f"previous_{m}" for m in PLATFORM_HEADER),
        *(f"change_{m}" for m in PLATFORM_HEADER),
    ]
    now_stats = {p.platform: p for p in researcher.platform_stats(quarter.start, quarter.end)}
    old_stats = {p.platform: p for p in researcher.platform_stats(previous.start, previous.end)}
    assert {row["platform"] for row in platforms} == set(now_stats) | set(old_stats)
    assert len(platforms) == 3
    for row in platforms:
        stats = now_stats[row["platform"]]
        assert row["submissions"] == shown(stats.submissions.value, stats.submissions.suppressed)
        assert row["corroborations"] == shown(stats.corroborations.value, stats.corroborations.suppressed)
        assert row["reupload_attempts"] == shown(stats.reupload_attempts.value, stats.reupload_attempts.suppressed)
        assert row["reuploads_blocked"] == shown(stats.actions.blocked.value, stats.actions.blocked.suppressed)
        assert float(row["share_blocked"]) == pytest.approx(stats.actions.share_blocked, abs=1e-4)
    # By hand: Beta saw 3 re-uploads and blocked all 3 this quarter, 2 the quarter before.
    beta_row = next(r for r in platforms if r["reupload_attempts"] == "3")
    assert (beta_row["reuploads_blocked"], beta_row["share_blocked"]) == ("3", "1")
    assert (beta_row["previous_reuploads_blocked"], beta_row["change_reuploads_blocked"]) == ("2", "1")
    gamma_row = next(r for r in platforms if r["reupload_attempts"] == "2")
    assert (gamma_row["reuploads_blocked"], gamma_row["share_blocked"]) == ("suppressed", "0.5")
    assert gamma_row["change_reuploads_blocked"] == ""  # no change from a withheld figure
    alpha_row = next(r for r in platforms if r["reupload_attempts"] == "0")
    assert (alpha_row["submissions"], alpha_row["median_hours_to_removal"]) == ("2", f"{4:.4g}")

    header, categories = read_csv(out / "categories.csv")
    assert header[:7] == [
        "category",
        "entries",
        "submissions",
        "reupload_attempts",
        "distinct_platforms",
        "reuploads_blocked",
        "share_blocked",
    ]
    hate = next(c for c in researcher.category_stats(quarter.start, quarter.end) if c.category == "hate_speech")
    hate_row = next(r for r in categories if r["category"] == "hate_speech")
    assert (hate_row["reupload_attempts"], hate_row["distinct_platforms"]) == ("5", "2")
    assert hate_row["submissions"] == shown(hate.submissions.value, hate.submissions.suppressed) == "2"
    assert (hate_row["previous_submissions"], hate_row["change_submissions"]) == ("2", "0")

    _, clusters = read_csv(out / "clusters.csv")
    (top,) = researcher.top_clusters(quarter.start, quarter.end)
    assert [(r["rank"], r["entry_id"], r["reupload_attempts"]) for r in clusters] == [("1", top.entry_id, "5")]
    assert clusters[0]["distinct_platforms"] == "2" and clusters[0]["reuploads_blocked"] == "4"

    header, series = read_csv(out / "series.csv")
    assert header[:3] == ["quarter", "week_start", "reupload_attempts"]
    weekly = researcher.spread_series(quarter.start, quarter.end, granularity="week")
    current = [r for r in series if r["quarter"] == str(quarter)]
    assert [r["week_start"] for r in current] == [p.start.isoformat() for p in weekly]
    assert current[0]["week_start"] == quarter.start.date().isoformat()
    assert sum(int(r["reupload_attempts"]) for r in current if r["reupload_attempts"] != "suppressed") == 5

    header, notices = read_csv(out / "notices.csv")
    assert header[:3] == ["quarter", "platform", "received"] and notices == []
    for client in (alpha, beta, gamma, researcher):
        client.close()


def test_the_reports_24_hour_share_equals_the_hand_computed_fixture(
    server_factory: ServerFactory, tmp_path: Path
) -> None:
    """Notices filed and decided at known times in 2026 Q4 (tests/fixtures/notices.py, worked
    out by hand): the report's per-platform share decided within 24 hours is that value."""
    server = server_factory(research_min_count=1)
    seeded = seed_notices(server.bank.store)
    token = new_member(server, "University Lab", "researcher")
    out = tmp_path / "review"
    done = run_report(f"127.0.0.1:{server.port}", token, Quarter.parse("2026Q4"), out)
    assert done.returncode == 0, done.stderr
    _, platforms = read_csv(out / "platforms.csv")
    by_pseudonym = {row["platform"]: row for row in platforms}
    for name, expected in EXPECTED.items():
        row = by_pseudonym[server.bank.pseudonym(seeded.platform_ids[name])]
        assert float(row["share_decided_within_24h"]) == pytest.approx(expected["share_decided_within_24h"])
        assert row["notices_received"] == str(expected["received"])
        assert float(row["median_hours_to_decision"]) == pytest.approx(expected["median_hours_to_decision"])
    page = (out / "index.html").read_text(encoding="utf-8")
    assert '<img src="notices_within_24h_per_platform.png"' in page
    assert all(name not in page for name in ("Platform A", "Platform B", "Seeded authority"))


def test_a_demo_bank_renders_in_one_command(server_factory: ServerFactory, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'demo.db'}"
    now = datetime.now(UTC)
    quarter = Quarter.parse(f"{now.year}Q{(now.month - 1) // 3 + 1}")
    seeded = subprocess.run(
        [str(BIN / "hashshare-server"), "demo-seed", "--store", store, "--entries", "12", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert seeded.returncode == 0, seeded.stderr
    bank = json.loads(seeded.stdout)
    assert bank["quarter"] == str(quarter) and bank["entries"] == 24 and bank["sightings"] > 0
    server = server_factory(store)
    out = tmp_path / "review"
    done = run_report(f"127.0.0.1:{server.port}", bank["researcher_token"], quarter, out)
    assert done.returncode == 0, done.stderr
    _, platforms = read_csv(out / "platforms.csv")
    assert len(platforms) == len(demo.PLATFORMS)
    assert "index.html" in done.stdout and (out / "top_clusters.png").exists()


def test_demo_report_seeds_serves_and_reports_in_one_command(tmp_path: Path) -> None:
    out = tmp_path / "review"
    done = subprocess.run(
        [str(BIN / "hashshare-server"), "demo-report", "--out", str(out), "--entries", "8"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} >= {"index.html", "top_clusters.png", "platforms.csv", "series.csv"}


def test_a_quarter_is_written_like_2026q4() -> None:
    q4 = Quarter.parse("2026Q4")
    assert (q4.start, q4.end) == (datetime(2026, 10, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert q4.previous() == Quarter(2026, 3) and Quarter.parse("2027-q1").previous() == q4
    with pytest.raises(ValueError, match="2026Q4"):
        Quarter.parse("2026Q5")
