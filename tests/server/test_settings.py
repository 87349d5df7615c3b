"""Every setting is documented, and flags and environment variables reach it."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path

import pytest

from hashshare import settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


@pytest.mark.parametrize("name", [f.name for f in fields(settings.Settings)])
def test_every_setting_is_documented_in_the_readme(name: str) -> None:
    assert f"`--{name.replace('_', '-')}`" in README


def test_flags_and_environment_set_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HASHSHARE_THREADS", "3")
    parser = argparse.ArgumentParser()
    settings.add_arguments(parser)
    parsed = settings.from_arguments(parser.parse_args(["--store", "redis://h:1/0", "--feed-poll-seconds", "0.5"]))
    assert parsed.threads == 3 and parsed.store == "redis://h:1/0" and parsed.feed_poll_seconds == 0.5
    assert parsed.listen == settings.Settings().listen
