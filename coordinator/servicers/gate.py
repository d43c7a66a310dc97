"""What every worker-facing call goes through: identity, rate limit, error mapping."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar, cast

import grpc

from coordinator.auth import CallAuthenticator
from coordinator.errors import (
    CoordinatorError,
    LimitExceededError,
    PermissionDeniedError,
    UnauthenticatedError,
)
from coordinator.metrics import CoordinatorMetrics
from coordinator.servicers.validation import raise_deferred
from coordinator.store import Store, WorkerRow
from coordinator.tls import CertificateError, peer_identity

logger = logging.getLogger(__name__)

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


class Gate:
    """Authenticates callers, enforces per-worker call rates and tracks activity."""

    def __init__(
        self,
        store: Store,
        authenticator: CallAuthenticator,
        metrics: CoordinatorMetrics,
        max_calls_per_minute: int,
        mutual_tls: bool = False,
    ) -> None:
        """Checks calls against enrolled workers in ``store``."""
        self._store = store
        self._authenticator = authenticator
        self.metrics = metrics
        self._max_calls = max_calls_per_minute
        self._mutual_tls = mutual_tls
        self._calls: defaultdict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()
        self.last_seen: dict[str, float] = {}

    def admit(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        method: str,
        *,
        key_holder: bool = False,
    ) -> WorkerRow:
        """Returns the authenticated caller of ``method``, once its request is known valid.

        Raises:
            UnauthenticatedError: identity not proven.
            PermissionDeniedError: ``key_holder`` is asked and the worker did not enrol as one.
            LimitExceededError: the worker exceeded its call rate.
            InvalidRequestError: the request is malformed (found by the validation interceptor).
        """
        metadata = cast(Sequence[tuple[str, str | bytes]] | None, context.invocation_metadata())
        worker = self._authenticator.authenticate(metadata, method)
        if self._mutual_tls:
            self._check_tls_identity(context, worker)
        now = time.time()
        with self._lock:
            calls = self._calls[worker.worker_id]
            while calls and calls[0] < now - 60.0:
                calls.popleft()
            if len(calls) >= self._max_calls:
                raise LimitExceededError(
                    f"worker {worker.worker_id} exceeded {self._max_calls} calls per minute;"
                    " slow down and honour retry windows"
                )
            calls.append(now)
            self.last_seen[worker.worker_id] = now
        if key_holder and not worker.key_holder_capable:
            raise PermissionDeniedError(f"worker {worker.worker_id} did not enrol as a key holder")
        raise_deferred()
        return worker

    @staticmethod
    def _check_tls_identity(context: grpc.aio.ServicerContext[Any, Any], worker: WorkerRow) -> None:
        """The TLS certificate must be the same device as the signed call."""
        try:
            peer = peer_identity(context)
        except CertificateError as error:
            raise UnauthenticatedError(f"client certificate: {error}") from None
        if peer is None or peer[0].worker_id != worker.worker_id:
            raise UnauthenticatedError(
                "the TLS client certificate belongs to another device than the call's signature"
            )

    def flush_last_seen(self) -> None:
        """Writes collected last-seen times to the store."""
        with self._lock:
            seen, self.last_seen = self.last_seen, {}
        self._store.touch_workers(seen)

    def active_workers(self, window_seconds: float) -> int:
        """Workers that called within the window (from memory and the store)."""
        horizon = time.time() - window_seconds
        stored = {w.worker_id: w.last_seen_time for w in self._store.list_workers()}
        with self._lock:
            stored.update(self.last_seen)
        return sum(1 for when in stored.values() if when >= horizon)


class _Servicer(Protocol):
    gate: Gate


def unary_errors(
    method: str,
) -> Callable[
    [Callable[[Any, RequestT, grpc.aio.ServicerContext[Any, Any]], Awaitable[ResponseT]]],
    Callable[[Any, RequestT, grpc.aio.ServicerContext[Any, Any]], Awaitable[ResponseT]],
]:
    """Maps CoordinatorError to its gRPC status for a unary-response handler."""

    def decorate(
        handler: Callable[
            [Any, RequestT, grpc.aio.ServicerContext[Any, Any]], Awaitable[ResponseT]
        ],
    ) -> Callable[[Any, RequestT, grpc.aio.ServicerContext[Any, Any]], Awaitable[ResponseT]]:
        @functools.wraps(handler)
        async def wrapper(
            self: _Servicer, request: RequestT, context: grpc.aio.ServicerContext[Any, Any]
        ) -> ResponseT:
            try:
                return await handler(self, request, context)
            except CoordinatorError as error:
                self.gate.metrics.rpc_errors.labels(method, error.code.name).inc()
                logger.info("[%s] refused: %s %s", method, error.code.name, error)
                await context.abort(error.code, str(error))
                raise  # unreachable: abort raises

        return wrapper

    return decorate


def stream_errors(
    method: str,
) -> Callable[
    [Callable[[Any, RequestT, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[ResponseT]]],
    Callable[[Any, RequestT, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[ResponseT]],
]:
    """Maps CoordinatorError to its gRPC status for a server-streaming handler."""

    def decorate(
        handler: Callable[
            [Any, RequestT, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[ResponseT]
        ],
    ) -> Callable[[Any, RequestT, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[ResponseT]]:
        @functools.wraps(handler)
        async def wrapper(
            self: _Servicer, request: RequestT, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[ResponseT]:
            try:
                async for response in handler(self, request, context):
                    yield response
            except CoordinatorError as error:
                self.gate.metrics.rpc_errors.labels(method, error.code.name).inc()
                logger.info("[%s] refused: %s %s", method, error.code.name, error)
                await context.abort(error.code, str(error))

        return wrapper

    return decorate
