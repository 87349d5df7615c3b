"""`hashshare eval`, test-sized, through a real server on loopback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ServerFactory, new_member

BIN = Path(sys.executable).parent


def test_eval_runs_end_to_end_and_writes_json_and_charts(server_factory: ServerFactory, tmp_path: Path) -> None:
    server = server_factory()
    token = new_member(server, "evaluator", "trust_safety", "platform")
    texts = tmp_path / "texts.txt"
    texts.write_text(
        "\n".join(
            [
                "Bọn người dân tộc đó không xứng đáng được sống ở đây, phải đuổi hết chúng đi ngay lập tức.",
                "Hôm nay trời đẹp, cả nhà cùng nhau đi dạo công viên và ăn kem ở bờ hồ.",
                "Giá xăng tuần này giảm nhẹ, người dân các thành phố lớn rất vui mừng vì điều đó.",
                "Đội bóng của trường sẽ thi đấu giao hữu với đội bạn vào chiều thứ bảy tuần sau.",
            ]
        ),
        encoding="utf-8",
    )
    out = tmp_path / "out"
    done = subprocess.run(
        [str(BIN / "hashshare"), "eval", "--builtin", "--limit-images", "6", "--texts", str(texts),
         "--limit-texts", "4", "--out", str(out), "--server", f"127.0.0.1:{server.port}", "--token", token],
        capture_output=True, text=True, timeout=600, env=dict(os.environ),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "false matches between" in done.stdout
    results = json.loads((out / "eval.json").read_text())
    assert (out / "recall.png").stat().st_size > 10_000 and (out / "tradeoff.png").stat().st_size > 10_000
    recall = results["server"]["recall"]
    assert set(recall["image"]) >= {"jpeg_q30", "flip_horizontal", "crop_10pct", "caption_bar_15pct"}
    assert recall["image"]["jpeg_q30"]["block"] == 1.0
    assert recall["text"]["diacritics_removed"]["block"] == 1.0
    assert results["server"]["false_matches"]["text"]["block"] == 0
    assert (
        results["signals"]["image/pdq"]["pairs"]
        == results["originals"]["image"] * (results["originals"]["image"] - 1) // 2
    )
    # The run cleans up after itself: every entry it submitted is retracted.
    assert server.bank.index.sizes() and all(size == 0 for size in server.bank.index.sizes().values())
