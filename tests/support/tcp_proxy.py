"""A loopback TCP proxy that cuts and delays connections on purpose (fault injection).

It runs its own event loop in a thread, so it serves subprocesses and in-process clients alike.
Cuts are decided per connection: after ``cut_after_bytes`` bytes have crossed it (either way),
the connection is reset, at most ``max_cuts`` times in total; ``random_cut_probability`` adds
random cuts per forwarded block for chaos runs. A cut resets the device's side at once; the
coordinator's side stays half-open until the coordinator next writes, as after a real reset.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass, field


@dataclass
class ProxyStats:
    """What the proxy did."""

    connections: int = 0
    cuts: int = 0
    bytes_forwarded: int = 0
    cut_offsets: list[int] = field(default_factory=list)


class FaultyProxy:
    """Forwards 127.0.0.1:<port> to a target, cutting connections as configured."""

    def __init__(
        self,
        target: str,
        *,
        cut_after_bytes: int | None = None,
        max_cuts: int = 0,
        random_cut_probability: float = 0.0,
        delay_seconds: float = 0.0,
        seed: int = 0,
        capture: bool = False,
    ) -> None:
        self._target_host, port = target.rsplit(":", 1)
        self._target_port = int(port)
        self.cut_after_bytes = cut_after_bytes
        self.max_cuts = max_cuts
        self.random_cut_probability = random_cut_probability
        self.delay_seconds = delay_seconds
        self.stats = ProxyStats()
        self.capture = capture
        # Bytes each client sent towards the target, one buffer per connection.
        self.captured: list[bytearray] = []
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FaultyProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut_all(self) -> None:
        """Resets every open connection now."""

        async def cut() -> None:
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(cut(), self._loop).result(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve() -> None:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
            self._ready.set()

        self._loop.run_until_complete(serve())
        self._loop.run_forever()

    def _should_cut(self, crossed: int) -> bool:
        if self.stats.cuts >= self.max_cuts and not self.random_cut_probability:
            return False
        if (
            self.cut_after_bytes is not None
            and crossed >= self.cut_after_bytes
            and self.stats.cuts < self.max_cuts
        ):
            return True
        return self._rng.random() < self.random_cut_probability

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self._target_host, self._target_port
            )
        except OSError:
            writer.transport.abort()
            return
        self._writers.update({writer, up_writer})
        crossed = [0]
        done = asyncio.Event()
        upstream = bytearray()
        if self.capture:
            self.captured.append(upstream)

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, record: bytearray | None
        ) -> None:
            try:
                while not done.is_set():
                    data = await source.read(65536)
                    if not data:
                        break
                    if self.delay_seconds:
                        await asyncio.sleep(self.delay_seconds)
                    crossed[0] += len(data)
                    self.stats.bytes_forwarded += len(data)
                    if self._should_cut(crossed[0]):
                        self.stats.cuts += 1
                        self.stats.cut_offsets.append(crossed[0])
                        # Reset the device now: waiting for the other direction to read
                        # would leave an idle device on a half-open link until keepalive.
                        writer.transport.abort()
                        break
                    if record is not None:
                        record.extend(data)
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                done.set()

        await asyncio.gather(
            pump(reader, up_writer, upstream if self.capture else None),
            pump(up_reader, writer, None),
        )
        for w in (writer, up_writer):
            w.transport.abort()
            self._writers.discard(w)
