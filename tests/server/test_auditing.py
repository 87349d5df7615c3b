"""What the audit trail takes from a call's messages: ids and content-free
facts only, for every audited RPC, including ones added later."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

import hashshare_client.pb.hashshare.v1  # noqa: F401  (registers every file in the pool)
from hashshare.api import auditing
from hashshare.audit import AUDITED
from hashshare.auth import PERMISSIONS
from hashshare_client.pb.hashshare.v1 import (  # noqa: F401
    admin_pb2,
    match_pb2,
    notice_pb2,
    research_pb2,
    submission_pb2,
)

SECRET = "secretcontent"


def _fill(message: Message, depth: int = 3) -> None:
    """Put SECRET in every text and bytes field, recursively, as a hostile caller could."""
    for field in message.DESCRIPTOR.fields:
        if field.type == FieldDescriptor.TYPE_STRING:
            if field.is_repeated:
                getattr(message, field.name).append(SECRET)
            elif field.containing_oneof is None or not message.WhichOneof(field.containing_oneof.name):
                setattr(message, field.name, SECRET)
        elif field.type == FieldDescriptor.TYPE_BYTES and not field.is_repeated:
            if field.containing_oneof is None or not message.WhichOneof(field.containing_oneof.name):
                setattr(message, field.name, SECRET.encode())
        elif field.type == FieldDescriptor.TYPE_MESSAGE and depth > 0:
            if field.is_repeated:
                _fill(getattr(message, field.name).add(), depth - 1)
            elif field.message_type.full_name != "google.protobuf.Timestamp":
                _fill(getattr(message, field.name), depth - 1)


def _request_of(method: str) -> Message:
    service, name = method.strip("/").split("/")
    found = descriptor_pool.Default().FindServiceByName(service).methods_by_name[name]
    return GetMessageClass(found.input_type)()


@pytest.mark.parametrize("method", sorted(AUDITED))
def test_no_free_text_of_any_audited_request_reaches_the_trail(method: str) -> None:
    assert method in PERMISSIONS  # an audited RPC is a real RPC
    request = _request_of(method)
    _fill(request)
    assert SECRET not in auditing.target_of(request, None)
    assert SECRET not in auditing.detail_of(request, validated=False)


def test_the_target_is_an_id_from_the_answer_first_then_the_request() -> None:
    request = notice_pb2.AnswerNoticeRequest(notice_id="ntc_7", reason="because ent_3 is lawful")
    answer = notice_pb2.AnswerNoticeResponse(notice=notice_pb2.Notice(notice_id="ntc_7", entry_id="ent_12"))
    assert auditing.target_of(request, answer) == "ntc_7"
    assert auditing.target_of(request, None) == "ntc_7"
    submitted = submission_pb2.SubmitResponse(entry_id="ent_5", submission_id="sub_9")
    assert auditing.target_of(submission_pb2.SubmitRequest(request_id="r"), submitted) == "ent_5"
    assert auditing.target_of(submission_pb2.RetractRequest(entry_id="not an id"), None) == ""
    created = admin_pb2.CreateMemberRequest(name="Platform A", roles=["platform", "trust_safety", "bogus"])
    assert auditing.detail_of(created, validated=True) == "roles=platform,trust_safety"
    answer_detail = auditing.detail_of(notice_pb2.AnswerNoticeRequest(decision=2, reason="x"), validated=True)
    assert answer_detail == "decision=NOTICE_STATE_REMOVED"
