"""Refuses malformed requests before any handler runs: one place, every RPC, every message.

gRPC hands a handler whatever its deserializer produced; bytes that are not a protobuf, an enum
value the schema does not define, or a string far longer than any legitimate value would
otherwise surface deep inside domain code as UNKNOWN.
This interceptor turns each into INVALID_ARGUMENT with the offending field named.

Calls that carry a signed identity learn nothing about the schema before they prove it: for
those the problem is held back until the gate has admitted the caller (``raise_deferred``), so
a stranger gets UNAUTHENTICATED and a worker without the role PERMISSION_DENIED, whatever it sent.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from coordinator.errors import InvalidRequestError

logger = logging.getLogger(__name__)

MAX_STRING = 1024  # ids, names and details; payload bytes travel as `bytes` fields

# Methods whose handlers authenticate the caller (Gate.admit) before they read the request.
AUTHENTICATED_PREFIXES = ("/hefl.v1.FederationService/", "/hefl.v1.CommitteeService/")
UNAUTHENTICATED_METHODS = frozenset({"/hefl.v1.FederationService/EnrollWorker"})

_deferred_problem: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "deferred_problem", default=None
)


def authenticated(method: str) -> bool:
    """Whether the handler of ``method`` admits its caller before it reads the request."""
    return method.startswith(AUTHENTICATED_PREFIXES) and method not in UNAUTHENTICATED_METHODS


def raise_deferred() -> None:
    """Raises the held-back request problem of this call, once its caller is admitted.

    Raises:
        InvalidRequestError: the request of this call is malformed.
    """
    reason = _deferred_problem.get()
    if reason is not None:
        raise InvalidRequestError(reason[:MAX_STRING])


class Malformed:
    """What the wrapped deserializer returns for bytes that do not parse."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def problem(message: Message, prefix: str = "") -> str | None:
    """The first field of ``message`` (recursively) a handler must not see, or None."""
    for field, value in message.ListFields():
        name = prefix + field.name
        values = value if field.is_repeated else [value]
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            message_type = field.message_type
            assert message_type is not None
            if message_type.GetOptions().map_entry:
                entries = value.items()
                for key, item in entries:
                    if isinstance(key, str) and len(key) > MAX_STRING:
                        return f"{name}: a key longer than {MAX_STRING} characters"
                    if isinstance(item, str) and len(item) > MAX_STRING:
                        return f"{name}[{key}]: longer than {MAX_STRING} characters"
                continue
            for index, item in enumerate(values):
                found = problem(item, f"{name}[{index}]." if len(values) > 1 else f"{name}.")
                if found:
                    return found
        elif field.type == FieldDescriptor.TYPE_ENUM:
            enum = field.enum_type
            assert enum is not None
            if any(item not in enum.values_by_number for item in values):
                return f"{name}: not a defined {enum.name} value"
        elif field.type == FieldDescriptor.TYPE_STRING and any(
            len(item) > MAX_STRING for item in values
        ):
            return f"{name}: longer than {MAX_STRING} characters"
    return None


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        if deserializer is None:
            return data
        try:
            return deserializer(data)
        except (DecodeError, ValueError, TypeError) as error:
            return Malformed(f"the request is not a valid protobuf message: {error}")

    return deserialize


def _check(request: Any) -> str | None:
    if isinstance(request, Malformed):
        return request.reason
    if isinstance(request, Message):
        found = problem(request)
        return None if found is None else f"invalid field {found}"
    return None


class ValidationInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps every handler so malformed input ends as INVALID_ARGUMENT."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """Returns the handler with a tolerant deserializer and a check before the behaviour."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        deserialize = _tolerant(handler.request_deserializer)
        method = handler_call_details.method
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _unary(handler.unary_unary, method), deserialize, handler.response_serializer
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                _unary_stream(handler.unary_stream, method),
                deserialize,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _stream_unary(handler.stream_unary, method),
                deserialize,
                handler.response_serializer,
            )
        return handler


async def _refuse(context: grpc.aio.ServicerContext[Any, Any], method: str, reason: str) -> None:
    logger.info("[%s] refused: INVALID_ARGUMENT %s", method.rsplit("/", 1)[-1], reason[:200])
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, reason[:MAX_STRING])


async def _hold_or_refuse(
    request: Any, context: grpc.aio.ServicerContext[Any, Any], method: str
) -> None:
    """Refuses a malformed request now, or holds the problem for Gate.admit to raise."""
    reason = _check(request)
    if reason is None:
        return
    if authenticated(method):
        _deferred_problem.set(reason)
    else:
        await _refuse(context, method, reason)


def _unary(behaviour: Any, method: str) -> Any:
    async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await _hold_or_refuse(request, context, method)
        return await behaviour(request, context)

    return checked


def _unary_stream(behaviour: Any, method: str) -> Any:
    async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        await _hold_or_refuse(request, context, method)
        result = behaviour(request, context)
        if inspect.isawaitable(result):
            # A handler that writes with context.write() (grpc.health's Watch) is a coroutine.
            await result
            return
        async for response in result:
            yield response

    return checked


def _stream_unary(behaviour: Any, method: str) -> Any:
    async def checked(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext[Any, Any]
    ) -> Any:
        async def validated() -> AsyncIterator[Any]:
            async for request in requests:
                reason = _check(request)
                if reason is not None:
                    await _refuse(context, method, reason)
                yield request

        return await behaviour(validated(), context)

    return checked
