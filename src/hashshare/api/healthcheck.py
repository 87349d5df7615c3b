"""``python -m hashshare.api.healthcheck [HOST:PORT] [--service NAME]``: exit 0 when the
server's gRPC health service answers SERVING, 1 otherwise.

For container health checks where no gRPC-aware prober exists (Docker's
HEALTHCHECK, compose); Kubernetes (``grpc:`` probes) and Envoy
(``grpc_health_check``) ask the same service themselves.
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check(target: str, service: str = "", timeout: float = 2.0) -> bool:
    """Whether ``target`` reports ``service`` ("" is the whole server) SERVING."""
    with grpc.insecure_channel(target) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
        except grpc.RpcError:
            return False
    return bool(response.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default="127.0.0.1:50051")
    parser.add_argument("--service", default="", help="a service name the server registers; empty: the server")
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args(argv)
    healthy = check(args.target, args.service, args.timeout)
    print("SERVING" if healthy else "NOT SERVING")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
