"""Chaos: a oneshot federation of real processes trains while its links fail at random.

Every worker reaches the coordinator through a FaultyProxy that resets connections at random
(per forwarded block, and per byte so that transfers get their share) and delays every block a
little. The proxy also follows the HTTP/2 traffic of each connection, so the test can tell which
gRPC calls each cut interrupted: uploads, downloads, committee work. Training must converge
anyway: nearly every round published, and the final model clearly better than the initial one.

A second test takes two committee members offline exactly while a round's descriptor is being
signed, and shows that the round opens although it can never be certified (a coordinator bug).
docs/reliability.md gives the figures.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from examples.federation import FederationSpec, LocalFederation, Observer, initial_accuracy
from hefl.v1 import committee_service_pb2 as cmt
from hefl.v1 import common_pb2 as common
from tests.support.metrics import scrape, value
from tests.support.tcp_proxy import FaultyProxy

ROUNDS = 4
WORKERS = 6
KEY_HOLDERS = 5
CUT_PROBABILITY = 0.005  # per forwarded block, either direction
CUTS_PER_MEGABYTE = 2.0  # and per byte: most cuts land in uploads, downloads, committee data
DELAY_SECONDS = 0.002  # per forwarded block
WIDTH = 512  # 38,410 parameters: transfers of ~150 KB span many blocks, so cuts land in them

# --- which calls a connection carried: HTTP/2 frames and HPACK (RFC 7540, RFC 7541) ---------------

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _CONTINUATION = 0x0, 0x1, 0x3, 0x9
_END_STREAM, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x4, 0x8, 0x20
# RFC 7541 Appendix A: the names of the static table (values never matter here).
_STATIC_NAMES = (
    ":authority :method :method :path :path :scheme :scheme"
    + " :status" * 7
    + " accept-charset accept-encoding accept-language accept-ranges accept"
    " access-control-allow-origin age allow authorization cache-control content-disposition"
    " content-encoding content-language content-length content-location content-range"
    " content-type cookie date etag expect expires from host if-match if-modified-since"
    " if-none-match if-range if-unmodified-since last-modified link location max-forwards"
    " proxy-authenticate proxy-authorization range referer refresh retry-after server set-cookie"
    " strict-transport-security transfer-encoding user-agent vary via www-authenticate"
).split()
assert len(_STATIC_NAMES) == 61


class UndecodableError(ValueError):
    """Bytes this small decoder does not follow (TLS, Huffman-coded strings)."""


class HeaderDecoder:
    """HPACK without Huffman coding, which is what gRPC's C core sends."""

    def __init__(self) -> None:
        self.table: list[tuple[bytes, bytes]] = []  # newest first
        self.size = 0
        self.max_size = 4096

    def _entry(self, index: int) -> tuple[bytes, bytes]:
        if 1 <= index <= len(_STATIC_NAMES):
            return _STATIC_NAMES[index - 1].encode(), b""
        return self.table[index - len(_STATIC_NAMES) - 1]

    def _insert(self, name: bytes, value: bytes) -> None:
        self.table.insert(0, (name, value))
        self.size += len(name) + len(value) + 32
        self._evict()

    def _evict(self) -> None:
        while self.size > self.max_size and self.table:
            name, value = self.table.pop()
            self.size -= len(name) + len(value) + 32

    @staticmethod
    def _integer(data: bytes, position: int, bits: int) -> tuple[int, int]:
        mask = (1 << bits) - 1
        number = data[position] & mask
        position += 1
        if number < mask:
            return number, position
        shift = 0
        while True:
            byte = data[position]
            position += 1
            number += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return number, position

    def _string(self, data: bytes, position: int) -> tuple[bytes, int]:
        if data[position] & 0x80:
            raise UndecodableError("Huffman-coded string")
        length, position = self._integer(data, position, 7)
        return data[position : position + length], position + length

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        headers = []
        position = 0
        while position < len(block):
            byte = block[position]
            if byte & 0x80:  # indexed field
                index, position = self._integer(block, position, 7)
                headers.append(self._entry(index))
                continue
            if byte & 0xE0 == 0x20:  # dynamic table size update
                self.max_size, position = self._integer(block, position, 5)
                self._evict()
                continue
            indexing = byte & 0xC0 == 0x40
            index, position = self._integer(block, position, 6 if indexing else 4)
            if index:
                name = self._entry(index)[0]
            else:
                name, position = self._string(block, position)
            value, position = self._string(block, position)
            if indexing:
                self._insert(name, value)
            headers.append((name, value))
        return headers


# Sees each gRPC message the coordinator sends (the connection, the method, the message bytes);
# returns True to cut the connection before the message reaches the device.
MessageHook = Callable[["CallTracker", str, bytes], bool]


class CallTracker:
    """Follows one proxied connection: the method of each stream, and which are still open."""

    def __init__(self, on_message: MessageHook | None = None) -> None:
        self.decoder = HeaderDecoder()
        self.readable = True
        self.methods: dict[int, str] = {}
        self.open: set[int] = set()
        self._client = bytearray()
        self._server = bytearray()
        self._preface = False
        self._block = bytearray()
        self._on_message = on_message
        self._replies: dict[int, bytearray] = {}
        self.worker_id = ""  # the device's hefl-worker-id header, once seen

    def open_calls(self) -> list[str]:
        return sorted(self.methods.get(stream, "?") for stream in self.open)

    @staticmethod
    def _frames(buffer: bytearray) -> list[tuple[int, int, int, bytes]]:
        frames = []
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            kind, flags = buffer[3], buffer[4]
            stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
            frames.append((kind, flags, stream, bytes(buffer[9 : 9 + length])))
            del buffer[: 9 + length]
        return frames

    def from_client(self, data: bytes) -> None:
        if not self.readable:
            return
        self._client += data
        if not self._preface:
            if len(self._client) < len(_PREFACE):
                return
            if not self._client.startswith(_PREFACE):
                self.readable = False  # not plaintext HTTP/2 (TLS, say)
                return
            del self._client[: len(_PREFACE)]
            self._preface = True
        try:
            for kind, flags, stream, payload in self._frames(self._client):
                if kind == _HEADERS:
                    if flags & _PADDED:
                        payload = payload[1 : len(payload) - payload[0]]
                    if flags & _PRIORITY:
                        payload = payload[5:]
                    self._block = bytearray(payload)
                    self.open.add(stream)
                elif kind == _CONTINUATION:
                    self._block += payload
                elif kind == _RST_STREAM:
                    self.open.discard(stream)
                    continue
                else:
                    continue
                if flags & _END_HEADERS:
                    for name, value in self.decoder.decode(bytes(self._block)):
                        if name == b":path":
                            self.methods[stream] = value.decode()
                        elif name == b"hefl-worker-id":
                            self.worker_id = value.decode()
        except (UndecodableError, IndexError, UnicodeDecodeError):
            self.readable = False

    def from_server(self, data: bytes) -> bool:
        """Follows the coordinator's frames; returns whether the hook wants the link cut."""
        self._server += data
        cut = False
        for kind, flags, stream, payload in self._frames(self._server):
            # gRPC ends every call with trailers (HEADERS with END_STREAM), or a reset.
            if (kind == _HEADERS and flags & _END_STREAM) or kind == _RST_STREAM:
                self.open.discard(stream)
            if kind != _DATA or self._on_message is None:
                continue
            if flags & _PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            buffer = self._replies.setdefault(stream, bytearray())
            buffer += payload
            while len(buffer) >= 5 and len(buffer) >= 5 + int.from_bytes(buffer[1:5], "big"):
                size = int.from_bytes(buffer[1:5], "big")
                message = bytes(buffer[5 : 5 + size])
                del buffer[: 5 + size]
                cut = self._on_message(self, self.methods.get(stream, "?"), message) or cut
        return cut


class _TapReader:
    def __init__(self, reader: asyncio.StreamReader, link: _Link, proxy: CallTrackingProxy) -> None:
        self._reader = reader
        self._link = link
        self._proxy = proxy

    async def read(self, size: int) -> bytes:
        data = await self._reader.read(size)
        self._link.tracker.from_client(data)
        if self._proxy.is_down(self._link.tracker.worker_id):
            self._link.device.abort()  # this device's link is down: refuse the connection
            return b""
        return data


class _TapWriter:
    def __init__(self, writer: asyncio.StreamWriter, link: _Link) -> None:
        self._writer = writer
        self._link = link
        self.transport = writer.transport

    def write(self, data: bytes) -> None:
        if self._link.tracker.from_server(data):
            self._link.device.abort()  # the hook cut the link before these bytes arrived
            return
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()


@dataclass
class _Link:
    """One proxied connection: its calls, and the device side to reset."""

    tracker: CallTracker
    device: asyncio.WriteTransport
    cut: bool = False
    crossed: int = 0  # bytes forwarded either way when the last block was


_LINK: contextvars.ContextVar[_Link] = contextvars.ContextVar("link")


class CallTrackingProxy(FaultyProxy):
    """A FaultyProxy whose cuts reset the device's connection at once, noting the calls cut.

    Cuts come per forwarded block (FaultyProxy's ``random_cut_probability``) and per byte
    (``cuts_per_megabyte``), and a hook may cut the link as a given message passes.

    Like FaultyProxy, it resets the device side at the moment of a cut (the coordinator side
    goes on half-open until the coordinator next writes, as with a real reset); it also resets
    the links of devices whose outage a hook started.
    """

    def __init__(
        self,
        target: str,
        *,
        random_cut_probability: float = 0.0,
        cuts_per_megabyte: float = 0.0,
        delay_seconds: float = 0.0,
        seed: int = 0,
        on_message: MessageHook | None = None,
    ) -> None:
        super().__init__(
            target,
            random_cut_probability=random_cut_probability,
            delay_seconds=delay_seconds,
            seed=seed,
        )
        self.cuts_per_byte = cuts_per_megabyte / 1e6
        self.on_message = on_message
        self.outages: dict[str, float] = {}  # worker id -> until when (monotonic) its link is down
        self.recording = True
        self.interrupted: list[list[str]] = []  # per cut, the calls it interrupted
        self.dropped: list[list[str]] = []  # connections that ended otherwise with calls open
        self.unreadable = 0

    def take_down(self, worker_id: str, seconds: float) -> None:
        """Refuses the device's connections for ``seconds`` (a link outage)."""
        self.outages[worker_id] = time.monotonic() + seconds

    def is_down(self, worker_id: str) -> bool:
        return bool(worker_id) and time.monotonic() < self.outages.get(worker_id, 0.0)

    def _should_cut(self, crossed: int) -> bool:
        cut = super()._should_cut(crossed)  # per block
        link = _LINK.get(None)  # the pumps run in their connection's context
        if link is not None and self.cuts_per_byte:
            # Per byte too, so that cuts land where the bytes are: in transfers.
            block, link.crossed = crossed - link.crossed, crossed
            cut = cut or self._rng.random() < -math.expm1(-self.cuts_per_byte * block)
        if cut and link is not None and not link.cut:
            link.cut = True
            if self.recording:
                self.interrupted.append(link.tracker.open_calls())
            link.device.abort()
        return cut

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tracker = CallTracker(self.on_message)
        link = _Link(tracker, writer.transport)
        _LINK.set(link)
        await super()._handle(
            cast(asyncio.StreamReader, _TapReader(reader, link, self)),
            cast(asyncio.StreamWriter, _TapWriter(writer, link)),
        )
        if not tracker.readable:
            self.unreadable += 1
        if self.recording and not link.cut and tracker.open:
            self.dropped.append(tracker.open_calls())


def traffic_kind(method: str) -> str:
    name = method.rsplit("/", 1)[-1]
    if "CommitteeService" in method:
        return "committee stream" if name == "WatchCommitteeTasks" else "committee call"
    return {
        "UploadUpdate": "upload",
        "GetUploadStatus": "upload",
        "DownloadModel": "download",
    }.get(name, "control")


# --- the test -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_training_converges_while_links_fail_at_random(tmp_path: Path) -> None:
    spec = FederationSpec(
        workdir=tmp_path,
        federation_id="chaos",
        workers=WORKERS,
        key_holders=KEY_HOLDERS,
        profile="oneshot",
        dp=False,
        rounds=ROUNDS,
        min_contributors=3,
        collect_seconds=40,
        width=WIDTH,
        tls=False,  # the proxy reads the HTTP/2 frames to tell which calls each cut interrupted
    )
    federation = LocalFederation(spec)
    coordinator = federation.start_coordinator()
    proxy = CallTrackingProxy(
        coordinator.grpc_address,
        random_cut_probability=CUT_PROBABILITY,
        cuts_per_megabyte=CUTS_PER_MEGABYTE,
        delay_seconds=DELAY_SECONDS,
        seed=20,
    )
    proxy.start()
    federation.worker_address = proxy.address
    try:
        for index in range(spec.workers):
            federation.workers.append(federation.start_worker(index))
        # The observer talks to the coordinator directly: it measures, it is not under test.
        observer = Observer(coordinator.grpc_address, spec)
        await observer.enroll()
        reports = await observer.follow(ROUNDS, timeout=720)
        proxy.recording = False
        samples = scrape(coordinator.metrics_address)
    finally:
        exit_code = federation.stop()
        proxy.stop()

    cuts_by_kind: Counter[str] = Counter()
    for calls in proxy.interrupted:
        for kind in {traffic_kind(call) for call in calls}:
            cuts_by_kind[kind] += 1
    print(
        f"\nchaos: {proxy.stats.cuts} cuts over {proxy.stats.connections} connections,"
        f" {proxy.stats.bytes_forwarded} bytes forwarded;"
        f" cuts that interrupted calls, by kind: {dict(cuts_by_kind)};"
        f" {len(proxy.dropped)} other connections ended with calls open"
    )
    for report in reports:
        print(
            f"round {report.round_number}: {report.outcome}, {report.contributors} contributors,"
            f" accuracy {report.accuracy:.3f}, {report.seconds:.1f} s"
        )

    assert exit_code == 0
    # The faults happened, and they hit every kind of traffic.
    assert proxy.stats.cuts >= 10, proxy.stats
    assert proxy.unreadable == 0
    assert proxy.stats.connections > WORKERS + proxy.stats.cuts // 2  # devices reconnected
    for kind in ("upload", "download", "committee call"):
        assert cuts_by_kind[kind] >= 1, (kind, cuts_by_kind, proxy.interrupted)
    # Training converged anyway: nearly every round published, the model clearly better.
    assert len(reports) == ROUNDS
    published = [r for r in reports if r.outcome == "published"]
    assert len(published) >= ROUNDS - 1, reports
    assert all(r.contributors >= spec.min_contributors for r in published)
    initial = initial_accuracy(spec)
    assert published[-1].accuracy >= 0.6, reports
    assert published[-1].accuracy > initial + 0.3, (initial, reports)
    # Every accepted upload was counted once: the coordinator's count matches the rounds'.
    accepted = value(samples, "hefl_coordinator_uploads_accepted_total")
    assert accepted == sum(r.contributors for r in reports)


# --- two members offline while a descriptor is signed ---------------------------------------------

QUORUM = 4  # certificate quorum of a 5-member committee (docs/committee.md: k = 5, t = 3, q = 4)
OUTAGE_SECONDS = 4.0  # longer than the 2 s straggler grace, far below the 30 s task timeout


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_round_opens_only_with_a_descriptor_it_can_certify(tmp_path: Path) -> None:
    """Two members lose their link for 4 s just as round 2's descriptor is to be signed.

    Only members that signed a round's descriptor certify its contributor set, and a certificate
    needs q = 4 of them; but the coordinator goes on once t = 3 have signed (plus a 2 s grace) and
    forgets the other signing tasks, so members that were offline then never sign. The round opens
    with 3 signatures, devices train and upload (with DP on, it is charged to the privacy ledger),
    and it can never be certified. A round whose descriptor went out must be certifiable.
    """
    offline: list[str] = []

    def drop_descriptor_signing(tracker: CallTracker, method: str, message: bytes) -> bool:
        if not method.endswith("/WatchCommitteeTasks") or len(offline) >= 2:
            return False
        task = cmt.WatchCommitteeTasksResponse.FromString(message).task
        if task.WhichOneof("kind") != "sign_descriptor" or task.round_number != 2:
            return False
        offline.append(tracker.worker_id)
        proxy.take_down(tracker.worker_id, OUTAGE_SECONDS)
        return True

    spec = FederationSpec(
        workdir=tmp_path,
        federation_id="outage",
        workers=WORKERS,
        key_holders=KEY_HOLDERS,
        profile="oneshot",
        dp=False,
        rounds=3,
        min_contributors=3,
        collect_seconds=30,
        tls=False,  # the proxy reads the committee tasks to time the outage
    )
    federation = LocalFederation(spec)
    coordinator = federation.start_coordinator()
    proxy = CallTrackingProxy(coordinator.grpc_address, on_message=drop_descriptor_signing)
    proxy.start()
    federation.worker_address = proxy.address
    try:
        for index in range(spec.workers):
            federation.workers.append(federation.start_worker(index))
        observer = Observer(coordinator.grpc_address, spec)
        await observer.enroll()
        reports = await observer.follow(spec.rounds, timeout=300)
    finally:
        exit_code = federation.stop()
        proxy.stop()
    assert exit_code == 0
    assert len(set(offline)) == 2, offline  # the outage happened, to two members
    with sqlite3.connect(tmp_path / "coordinator" / "state" / "coordinator.sqlite3") as db:
        rows = db.execute(
            "SELECT round_number, descriptor, detail FROM rounds ORDER BY round_number"
        ).fetchall()
    signatures = {
        number: len(common.SignedRoundDescriptor.FromString(raw).signatures)
        for number, raw, _ in rows
        if raw
    }
    print(f"\ndescriptor signatures by round: {signatures}")
    for report, (_, _, detail) in zip(reports, rows, strict=True):
        outcome = f"{report.outcome}, {report.contributors} uploads"
        print(f"round {report.round_number}: {outcome}; {detail}")
    # Every round that opened to devices can be certified.
    assert all(count >= QUORUM for count in signatures.values()), signatures
    assert reports[0].outcome == "published" and reports[-1].outcome == "published", reports
