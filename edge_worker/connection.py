"""One gRPC channel per process, signed calls, and retries with jittered exponential backoff."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from crypto.call_auth import call_metadata
from crypto.signing import SigningKey
from edge_worker.config import WorkerConfig
from edge_worker.tls import client_tls

logger = logging.getLogger(__name__)

T = TypeVar("T")
# CANCELLED: an overloaded or restarting server drops calls it could not start; every call the
# device retries is idempotent (enrolment, check-in, status) or resumable (transfers).
RETRYABLE = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


def channel_options(config: WorkerConfig) -> list[tuple[str, int]]:
    """Client channel arguments matching the coordinator's keepalive policy."""
    return [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.keepalive_time_ms", int(config.keepalive_time_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", 20_000),
        # Pings only during calls: an idle device must not be told "too many pings".
        ("grpc.keepalive_permit_without_calls", 0),
        ("grpc.http2.max_pings_without_data", 0),
        # Reconnect quickly when a link comes back.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]


def full_jitter_delays(initial: float, maximum: float) -> Callable[[int], float]:
    """Delay before attempt n (1-based): uniform in [0, min(maximum, initial * 2^n)]."""
    rng = random.SystemRandom()

    def delay(attempt: int) -> float:
        return rng.uniform(0.0, min(maximum, initial * 2**attempt))

    return delay


class Connection:
    """A channel to the coordinator plus the device key that signs every call."""

    def __init__(self, config: WorkerConfig, key: SigningKey) -> None:
        """Opens the channel lazily; gRPC reconnects by itself when the link returns."""
        self.config = config
        self.key = key
        tls = client_tls(config)
        if tls is None:
            self.channel = grpc.aio.insecure_channel(
                config.coordinator, options=channel_options(config)
            )
        else:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=tls.ca, private_key=tls.key, certificate_chain=tls.cert
            )
            self.channel = grpc.aio.secure_channel(
                config.coordinator, credentials, options=channel_options(config)
            )
        self._delay = full_jitter_delays(config.backoff_initial_seconds, config.backoff_max_seconds)

    def metadata(self, method: str) -> tuple[tuple[str, str | bytes], ...]:
        """Signed-call metadata for ``method`` (full name)."""
        return call_metadata(self.key, method)

    async def close(self) -> None:
        """Closes the channel."""
        await self.channel.close(grace=None)

    async def backoff(self, attempt: int, give_up_at: float | None = None) -> None:
        """Sleeps the jittered delay for retry number ``attempt`` (capped by ``give_up_at``)."""
        pause = self._delay(attempt)
        if give_up_at is not None:
            pause = min(pause, max(give_up_at - time.time(), 0.0))
        await asyncio.sleep(pause)

    async def retry(
        self,
        what: str,
        call: Callable[[], Awaitable[T]],
        give_up_at: float | None = None,
    ) -> T:
        """Runs ``call`` until it succeeds, retrying only transient failures.

        Args:
            what: Name for logs.
            call: Makes one attempt (a fresh call each time, so metadata is re-signed).
            give_up_at: Unix time after which a transient failure is raised instead.

        Raises:
            grpc.aio.AioRpcError: a non-retryable status, or the last transient one.
        """
        attempt = 0
        while True:
            try:
                return await call()
            except grpc.aio.AioRpcError as error:
                attempt += 1
                limit = self.config.max_attempts
                out_of_time = give_up_at is not None and time.time() >= give_up_at
                if error.code() not in RETRYABLE or (limit and attempt >= limit) or out_of_time:
                    raise
                pause = self._delay(attempt)
                if give_up_at is not None:
                    pause = min(pause, max(give_up_at - time.time(), 0.0))
                logger.info(
                    "%s: %s (%s); retrying in %.1f s",
                    what,
                    error.code().name,
                    error.details(),
                    pause,
                )
                await asyncio.sleep(pause)
