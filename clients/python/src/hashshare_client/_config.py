"""Channel settings shared by the sync and async clients."""

from __future__ import annotations

import json
import os

DEFAULT_TARGET = "127.0.0.1:50051"
TARGET_ENV = "HASHSHARE_SERVER"
TOKEN_ENV = "HASHSHARE_TOKEN"
# Upload-time lookups must not hold an upload for long; a backfill stream
# has no deadline of its own (set one per call when needed).
DEFAULT_TIMEOUT = 10.0
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

_IDEMPOTENT_SERVICES = (
    "hashshare.v1.MatchService",
    "hashshare.v1.SubmissionService",
    "hashshare.v1.ResearchService",
    "hashshare.v1.AdminService",
)

# Every unary call is safe to retry on UNAVAILABLE: reads are, and every
# mutating call carries a request_id that the server deduplicates (AIP-155).
# gRPC resends the same serialized message, so the request_id is the same.
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": service} for service in _IDEMPOTENT_SERVICES],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

CHANNEL_OPTIONS: tuple[tuple[str, int | str], ...] = (
    ("grpc.service_config", SERVICE_CONFIG),
    ("grpc.enable_retries", 1),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
)


def resolve_target(target: str | None) -> str:
    return target or os.environ.get(TARGET_ENV) or DEFAULT_TARGET


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    token = token if token is not None else os.environ.get(TOKEN_ENV)
    return (("authorization", f"Bearer {token}"),) if token else ()
