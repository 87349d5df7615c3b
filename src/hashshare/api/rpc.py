"""The one place where calls are authenticated, authorised, and where the
exception tree becomes gRPC status codes with google.rpc.Status details."""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, Protocol, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..audit import AUDITED
from ..bank import Bank
from ..errors import HashshareError, InvalidArgument, Unavailable
from ..model import Principal
from . import auditing

log = logging.getLogger(__name__)

ERROR_DOMAIN = "hashshare"


class Servicer(Protocol):
    SERVICE: str
    bank: Bank


_S = TypeVar("_S", bound=Servicer)


def status_of(error: HashshareError) -> status_pb2.Status:
    """The google.rpc.Status for an error: its code, message, ErrorInfo and,
    for InvalidArgument, a BadRequest naming every bad field."""
    details = []
    if isinstance(error, InvalidArgument):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in error.violations
            ]
        )
        details.append(_pack(bad_request))
    details.append(_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN)))
    return status_pb2.Status(code=code_pb2.Code.Value(error.code), message=error.message, details=details)


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def abort(context: grpc.ServicerContext, error: HashshareError) -> NoReturn:
    context.abort_with_status(rpc_status.to_status(status_of(error)))
    raise AssertionError("unreachable: abort_with_status raises")


def _authorise(servicer: Servicer, context: grpc.ServicerContext, method: str) -> Principal:
    principal = _authenticate(servicer, context)
    servicer.bank.auth.authorize(principal, method)
    return principal


def _authenticate(servicer: Servicer, context: grpc.ServicerContext) -> Principal:
    if not servicer.bank.feed.loaded.is_set():
        raise Unavailable("the index is still loading; retry shortly")
    metadata = dict(context.invocation_metadata())
    authorization = metadata.get("authorization")
    return servicer.bank.auth.authenticate(authorization if isinstance(authorization, str) else None)


def _internal(context: grpc.ServicerContext, method: str) -> NoReturn:
    log.exception("%s failed", method)
    context.abort(grpc.StatusCode.INTERNAL, "internal error; it has been logged")
    raise AssertionError("unreachable")


def rpc(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a servicer method ``fn(self, request, context, principal)``.

    The RPC's full name is the servicer's SERVICE and the method's name, so
    the permission table in hashshare.auth is the only list of methods.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def streaming(self: _S, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            method = f"/{self.SERVICE}/{fn.__name__}"
            try:
                principal = _authorise(self, context, method)
                yield from fn(self, request, context, principal)
            except HashshareError as error:
                abort(context, error)
            except Exception:
                _internal(context, method)

        return streaming

    @functools.wraps(fn)
    def unary(self: _S, request: Any, context: grpc.ServicerContext) -> Any:
        method = f"/{self.SERVICE}/{fn.__name__}"
        if method in AUDITED:
            return _audited(self, fn, request, context, method)
        try:
            principal = _authorise(self, context, method)
            return fn(self, request, context, principal)
        except HashshareError as error:
            abort(context, error)
        except Exception:
            _internal(context, method)

    return unary


def _audited(
    servicer: Servicer, fn: Callable[..., Any], request: Any, context: grpc.ServicerContext, method: str
) -> Any:
    """A mutating call: as ``unary``, and its outcome appended to the audit trail."""
    principal: Principal | None = None
    try:
        principal = _authenticate(servicer, context)
        servicer.bank.auth.authorize(principal, method)  # a refusal is audited with its caller
        response = fn(servicer, request, context, principal)
    except HashshareError as error:
        _record(servicer, method, principal, request, None, error.code)
        abort(context, error)
    except Exception:
        _record(servicer, method, principal, request, None, "INTERNAL")
        _internal(context, method)
    try:
        servicer.bank.audit_log.append(
            auditing.draft_of(method, principal, request, response, "OK", servicer.bank.now())
        )
    except Exception:
        # Applied but not audited: the caller retries with its request_id,
        # the replay changes nothing and is audited then.
        log.exception("%s: could not append to the audit trail", method)
        abort(context, Unavailable("the call was applied but could not be audited; retry with the same request_id"))
    return response


def _record(
    servicer: Servicer, method: str, principal: Principal | None, request: Any, response: Any, result: str
) -> None:
    try:
        servicer.bank.audit_log.append(
            auditing.draft_of(method, principal, request, response, result, servicer.bank.now())
        )
    except Exception:
        log.exception("%s: could not audit a failed call", method)
