"""The member directory's messages: contact points in and out."""

from __future__ import annotations

from collections.abc import Sequence

from hashshare_client.pb.hashshare.v1 import admin_pb2

from .. import directory
from ..bank import Bank
from ..errors import FieldViolation
from ..model import ContactPoint, IdKind, parse_id


def contact_points_from_proto(
    messages: Sequence[admin_pb2.ContactPoint], field: str, violations: list[FieldViolation]
) -> tuple[ContactPoint, ...]:
    points = directory.normalised([ContactPoint(m.name, m.role, m.email, m.phone) for m in messages])
    directory.check_contact_points(points, field, violations)
    return points


def contact_point_messages(points: Sequence[ContactPoint]) -> list[admin_pb2.ContactPoint]:
    return [admin_pb2.ContactPoint(name=p.name, role=p.role, email=p.email, phone=p.phone) for p in points]


def with_contact_points(bank: Bank, members: Sequence[admin_pb2.Member]) -> list[admin_pb2.Member]:
    """Member messages with their contact points filled in from the directory."""
    points = bank.store.contact_points(parse_id(IdKind.MEMBER, m.member_id, "member_id") for m in members)
    for message in members:
        message.contact_points.extend(
            contact_point_messages(points.get(parse_id(IdKind.MEMBER, message.member_id, "member_id"), ()))
        )
    return list(members)
