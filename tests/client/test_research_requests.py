"""The SDK's ReportAction requests: chunking, request ids and validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hashshare_client import Action, ActionReport
from hashshare_client._research import report_action_requests
from hashshare_client.pb.hashshare.v1 import match_pb2


def test_reports_go_1000_a_call_under_derived_request_ids() -> None:
    reports = [ActionReport(f"ent_{n}", Action.BLOCKED, item_id=f"i{n}") for n in range(2500)]
    requests = report_action_requests(reports, "nightly-42")
    assert [r.request_id for r in requests] == ["nightly-42", "nightly-42:2", "nightly-42:3"]
    assert [len(r.actions) for r in requests] == [1000, 1000, 500]
    assert [a.entry_id for r in requests for a in r.actions] == [f"ent_{n}" for n in range(2500)]
    fresh = report_action_requests(reports[:1], None)
    assert len(fresh) == 1 and fresh[0].request_id  # a new UUID
    assert report_action_requests([], "x") == []


def test_a_report_carries_its_action_time_and_item() -> None:
    acted = datetime(2026, 11, 2, 8, 30, tzinfo=UTC)
    (request,) = report_action_requests([ActionReport("ent_7", "removed_after_review", acted, "post-9")], "r")
    (sent,) = request.actions
    assert sent.action == match_pb2.ACTION_REMOVED_AFTER_REVIEW
    assert sent.acted_at.ToDatetime(tzinfo=UTC) == acted and sent.item_id == "post-9"
    assert not report_action_requests([ActionReport("ent_7", Action.BLOCKED)], "r")[0].actions[0].HasField("acted_at")
    with pytest.raises(ValueError):
        report_action_requests([ActionReport("ent_7", "shrugged")], "r")
    with pytest.raises(ValueError, match="time zone"):
        report_action_requests([ActionReport("ent_7", Action.BLOCKED, datetime(2026, 11, 2))], "r")
