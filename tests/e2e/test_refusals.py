"""What the server refuses, and how: status codes, named fields, nothing half-written."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from PIL import Image

from hashshare.api.server import RunningServer
from hashshare.auth import hash_token
from hashshare_client import (
    Client,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnauthenticatedError,
    signal_types,
    signals,
)
from hashshare_client.pb.hashshare.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    match_pb2,
    match_pb2_grpc,
    research_pb2,
    research_pb2_grpc,
    signal_pb2,
    submission_pb2,
    submission_pb2_grpc,
)
from tests.conftest import ServerFactory, encode, new_member

PDQ = signal_types.PDQ


class Stubs:
    def __init__(self, server: RunningServer) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        self.match = match_pb2_grpc.MatchServiceStub(self.channel)
        self.submission = submission_pb2_grpc.SubmissionServiceStub(self.channel)
        self.research = research_pb2_grpc.ResearchServiceStub(self.channel)
        self.admin = admin_pb2_grpc.AdminServiceStub(self.channel)


@pytest.fixture
def server(server_factory: ServerFactory) -> RunningServer:
    return server_factory()


@pytest.fixture
def stubs(server: RunningServer) -> Iterator[Stubs]:
    stubs = Stubs(server)
    yield stubs
    stubs.channel.close()


def auth(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def pdq_signal(**fields: object) -> signal_pb2.Signal:
    values: dict[str, object] = {"type": PDQ.name, "version": PDQ.version, "raw": bytes(range(32)), "quality": 90}
    values.update(fields)
    return signal_pb2.Signal(**values)  # type: ignore[arg-type]


def violations(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None, "the error carries no google.rpc.Status"
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            found.update({v.field: v.description for v in bad_request.field_violations})
    return found


def submit_request(**fields: object) -> submission_pb2.SubmitRequest:
    values: dict[str, object] = {
        "request_id": "r1",
        "signals": [pdq_signal()],
        "category": "hate_speech",
        "legal_basis": signal_pb2.LEGAL_BASIS_LOCAL_LAW,
    }
    values.update(fields)
    return submission_pb2.SubmitRequest(**values)  # type: ignore[arg-type]


MALFORMED_SUBMITS = {
    "wrong hash length": (submit_request(signals=[pdq_signal(raw=b"\x01" * 31)]), "signals[0].raw"),
    "unknown signal type": (submit_request(signals=[pdq_signal(type="image/photodna")]), "signals[0].type"),
    "bad hex": (submit_request(signals=[pdq_signal(hex="zz" * 32)]), "signals[0].hex"),
    "odd hex": (submit_request(signals=[pdq_signal(hex="abc")]), "signals[0].hex"),
    "other version": (submit_request(signals=[pdq_signal(version="pdq0")]), "signals[0].version"),
    "missing value": (
        submit_request(signals=[signal_pb2.Signal(type=PDQ.name, version=PDQ.version)]),
        "signals[0].raw",
    ),
    "missing category": (submit_request(category=""), "category"),
    "unknown category": (submit_request(category="spam"), "category"),
    "missing legal basis": (submit_request(legal_basis=signal_pb2.LEGAL_BASIS_UNSPECIFIED), "legal_basis"),
    "no signals": (submit_request(signals=[]), "signals"),
    "oversized batch": (submit_request(signals=[pdq_signal()] * 321), "signals"),
    "missing request id": (submit_request(request_id=""), "request_id"),
    "low quality pdq": (submit_request(signals=[pdq_signal(quality=12)]), "signals[0].quality"),
}


@pytest.mark.parametrize("case", list(MALFORMED_SUBMITS))
def test_malformed_submit_is_invalid_argument_naming_the_field_and_stores_nothing(
    case: str, server: RunningServer, stubs: Stubs
) -> None:
    token = new_member(server, "ts", "trust_safety")
    request, field = MALFORMED_SUBMITS[case]
    with pytest.raises(grpc.RpcError) as caught:
        stubs.submission.Submit(request, metadata=auth(token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(caught.value)
    assert server.bank.feed.catch_up() == 0 and server.bank.index.sizes() == {}
    assert server.bank.store.get_entry(1) is None


def test_every_bad_field_is_named_at_once(server: RunningServer, stubs: Stubs) -> None:
    token = new_member(server, "ts", "trust_safety")
    request = submit_request(category="", signals=[pdq_signal(type="x"), pdq_signal(hex="q")], request_id="")
    with pytest.raises(grpc.RpcError) as caught:
        stubs.submission.Submit(request, metadata=auth(token))
    assert {"category", "signals[0].type", "signals[1].hex", "request_id"} <= set(violations(caught.value))


MALFORMED_MATCHES = {
    "wrong hash length": (match_pb2.MatchRequest(signals=[pdq_signal(raw=b"\x00")]), "signals[0].raw"),
    "unknown signal type": (match_pb2.MatchRequest(signals=[pdq_signal(type="video/tmk")]), "signals[0].type"),
    "bad hex": (match_pb2.MatchRequest(signals=[pdq_signal(hex="g" * 64)]), "signals[0].hex"),
    "oversized batch": (match_pb2.MatchRequest(signals=[pdq_signal()] * 321), "signals"),
    "threshold over the limit": (
        match_pb2.MatchRequest(
            signals=[pdq_signal()], thresholds=[match_pb2.Threshold(signal_type=PDQ.name, block=90)]
        ),
        "thresholds[0].block",
    ),
    "threshold of unknown type": (
        match_pb2.MatchRequest(signals=[pdq_signal()], thresholds=[match_pb2.Threshold(signal_type="x", block=1)]),
        "thresholds[0].signal_type",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED_MATCHES))
def test_malformed_match_is_invalid_argument_naming_the_field(case: str, server: RunningServer, stubs: Stubs) -> None:
    token = new_member(server, "platform", "platform")
    request, field = MALFORMED_MATCHES[case]
    with pytest.raises(grpc.RpcError) as caught:
        stubs.match.Match(request, metadata=auth(token))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(caught.value)


def test_a_malformed_item_in_a_stream_does_not_end_it(server: RunningServer, stubs: Stubs) -> None:
    token = new_member(server, "platform", "platform")
    requests = [
        match_pb2.MatchRequest(item_id="good-1", signals=[pdq_signal()]),
        match_pb2.MatchRequest(item_id="bad", signals=[pdq_signal(hex="nothex")]),
        match_pb2.MatchRequest(item_id="good-2", signals=[pdq_signal()]),
    ]
    responses = list(stubs.match.MatchStream(iter(requests), metadata=auth(token)))
    assert [r.item_id for r in responses] == ["good-1", "bad", "good-2"]
    assert not responses[0].HasField("error") and not responses[2].HasField("error")
    assert responses[1].error.code == "INVALID_ARGUMENT"
    assert responses[1].error.field_violations[0].field == "signals[0].hex"


def test_reusing_a_request_id_for_another_submission_is_refused(
    server: RunningServer, photos: dict[str, Image.Image]
) -> None:
    with Client(f"127.0.0.1:{server.port}", new_member(server, "ts", "trust_safety")) as client:
        client.submit(signals.from_image(encode(photos["coffee"])), category="hate_speech", request_id="same")
        with pytest.raises(InvalidArgumentError) as caught:
            client.submit(signals.from_image(encode(photos["chelsea"])), category="hate_speech", request_id="same")
    assert caught.value.field_violations[0].field == "request_id"
    assert server.bank.store.get_entry(2) is None


def test_submit_of_a_blank_image_is_refused_with_a_clear_reason(server: RunningServer) -> None:
    blank = encode(Image.new("RGB", (400, 300), (240, 240, 240)))
    token = new_member(server, "ts", "trust_safety")
    with Client(f"127.0.0.1:{server.port}", token) as client, pytest.raises(InvalidArgumentError, match="too little"):
        client.submit(signals.from_image(blank), category="hate_speech")


def test_missing_wrong_and_revoked_tokens_are_unauthenticated(server: RunningServer, stubs: Stubs) -> None:
    request = match_pb2.MatchRequest(signals=[pdq_signal()])
    for metadata in ((), auth("hs_not-a-token"), (("authorization", "Basic abc"),)):
        with pytest.raises(grpc.RpcError) as caught:
            stubs.match.Match(request, metadata=metadata)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    token = new_member(server, "platform", "platform")
    assert stubs.match.Match(request, metadata=auth(token)).verdict == signal_pb2.VERDICT_NONE
    found = server.bank.store.find_token(hash_token(token))
    assert found is not None
    # Revoked directly in the store, as `hashshare-server admin revoke-token` does.
    server.bank.store.revoke_token(found[0].token_id, 0.0)
    server.bank.feed.catch_up()
    with pytest.raises(grpc.RpcError) as caught:
        stubs.match.Match(request, metadata=auth(token))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


ROLE_CASES = [
    # (role, call name, allowed)
    ("platform", "match", True),
    ("platform", "submit", False),
    ("platform", "spread", False),
    ("platform", "admin", False),
    ("trust_safety", "match", False),
    ("trust_safety", "submit", True),
    ("trust_safety", "spread", False),
    ("researcher", "match", False),
    ("researcher", "submit", False),
    ("researcher", "entry", False),
    ("researcher", "spread", True),
    ("researcher", "admin", False),
    ("admin", "match", False),
    ("admin", "admin", True),
]


@pytest.mark.parametrize(("role", "call", "allowed"), ROLE_CASES)
def test_each_role_is_refused_what_it_may_not_do(
    role: str, call: str, allowed: bool, server: RunningServer, stubs: Stubs
) -> None:
    token = new_member(server, f"member-{role}", role)
    submitter = new_member(server, "submitter", "trust_safety")
    entry = stubs.submission.Submit(submit_request(request_id="seed"), metadata=auth(submitter)).entry_id
    calls = {
        "match": lambda: stubs.match.Match(match_pb2.MatchRequest(signals=[pdq_signal()]), metadata=auth(token)),
        "submit": lambda: stubs.submission.Submit(submit_request(request_id="x"), metadata=auth(token)),
        "entry": lambda: stubs.submission.GetEntry(
            submission_pb2.GetEntryRequest(entry_id=entry), metadata=auth(token)
        ),
        "spread": lambda: stubs.research.GetSpread(research_pb2.GetSpreadRequest(entry_id=entry), metadata=auth(token)),
        "admin": lambda: stubs.admin.ListMembers(admin_pb2.ListMembersRequest(), metadata=auth(token)),
    }
    if allowed:
        calls[call]()
        return
    with pytest.raises(grpc.RpcError) as caught:
        calls[call]()
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_trust_safety_cannot_retract_another_members_submission(
    server: RunningServer, photos: dict[str, Image.Image]
) -> None:
    target = f"127.0.0.1:{server.port}"
    with (
        Client(target, new_member(server, "a", "trust_safety")) as a,
        Client(target, new_member(server, "b", "trust_safety")) as b,
    ):
        entry_id = a.submit(signals.from_image(encode(photos["coffee"])), category="hate_speech").entry_id
        with pytest.raises(NotFoundError):
            b.retract(entry_id)
        assert a.get_entry(entry_id).active


def test_sdk_maps_codes_to_exceptions(server: RunningServer) -> None:
    target = f"127.0.0.1:{server.port}"
    with Client(target, "hs_wrong") as client, pytest.raises(UnauthenticatedError):
        client.match(signals.from_text("xin chào"))
    with Client(target, new_member(server, "r", "researcher")) as client, pytest.raises(PermissionDeniedError):
        client.match(signals.from_text("xin chào"))
