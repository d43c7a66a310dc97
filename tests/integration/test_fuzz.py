"""Fuzzing every RPC with random and structurally malformed requests (docs/reliability.md).

One in-process coordinator (plaintext profile) runs on its own event loop in a thread for the
whole module, and hypothesis drives a blocking gRPC client against it over loopback, so that
each example is one or a few real calls with a deadline. Properties, checked after every call:

- the call ends with a status of the documented set (docs/protocol.md, "Status codes") and never
  hangs (every call has a deadline; only the two long-lived watch streams may run into theirs);
- the coordinator keeps serving (health SERVING, and after each test a fresh device enrols,
  checks in and gets a valid upload accepted);
- no accepted state changes: the enrolled workers (except through a valid EnrollWorker), the
  accepted uploads and the round's contributors and aggregate, and the committed bytes of an
  honest upload paused mid-way (completed by the last test).

Uploads, downloads, enrolments and call authentication are also checked against small models of
the protocol that predict the exact status and the committed state after each stream.

A status outside the documented set that is found but not yet fixed goes into ``KNOWN_BUGS``;
the fuzz tests tolerate exactly that answer for the input that triggers it, so that they keep
finding new problems. The bugs found so far are fixed, and ``test_regression`` replays each
with a minimal request (``FIXED_BUGS``).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import grpc
import numpy as np
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from coordinator.config import build_config
from coordinator.server import SERVICE_NAMES, Coordinator, start
from crypto import plaintext_update
from crypto.call_auth import call_metadata
from crypto.signing import SignatureTag, SigningKey, worker_id_for
from edge_worker.runner import enrollment_proof_message
from hefl.v1 import committee_service_pb2 as cmt
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2 as fed
from hefl.v1 import operator_service_pb2 as ops
from tests.support.cluster import FEDERATION, coordinator_settings

T = TypeVar("T")
M = TypeVar("M", bound=Message)

PARAMETERS = 1000
FRAME = 1024  # chunk size of the well-formed uploads: a 4020-byte payload is 4 chunks
CHUNK_LIMIT = 2048
PAYLOAD_LIMIT = 1 << 20
CALL_TIMEOUT = 10.0
WATCH_TIMEOUT = 0.3
U64 = 2**64 - 1

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
EXISTS = grpc.StatusCode.ALREADY_EXISTS
DATA_LOSS = grpc.StatusCode.DATA_LOSS
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
UNKNOWN = grpc.StatusCode.UNKNOWN

# docs/protocol.md, "Status codes" (plus OK).
DOCUMENTED = frozenset(
    {
        OK,
        INVALID,
        PRECONDITION,
        EXISTS,
        DATA_LOSS,
        EXHAUSTED,
        UNAUTHENTICATED,
        DENIED,
        NOT_FOUND,
        grpc.StatusCode.UNAVAILABLE,
    }
)
# The client's answer when the status message itself is too large for the transport: not an
# answer of the coordinator, so not a documented status even though the code is in the table.
TRAILER_TOO_LARGE = "received metadata size exceeds hard limit"
# Subscriptions that wait for events by design: reaching their deadline is not a hang.
WATCH_STREAMS = frozenset(
    {"/hefl.v1.OperatorService/WatchRoundEvents", "/hefl.v1.CommitteeService/WatchCommitteeTasks"}
)


def fuzz_settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# Outcomes seen, by RPC and status (printed by the last test: pytest -s).
SEEN: Counter[str] = Counter()


def note(outcome: str) -> None:
    """Counts an outcome (and tells hypothesis, for --hypothesis-show-statistics)."""
    SEEN[outcome] += 1
    if currently_in_test_context():
        event(outcome)


Metadata = tuple[tuple[str, str | bytes], ...]


# --- the services, from their descriptors -------------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    """One method of the hefl.v1 services."""

    path: str
    request: type[Message]
    client_streaming: bool
    server_streaming: bool

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[1]


def _rpcs() -> list[Rpc]:
    found = []
    for module, name in (
        (fed, "FederationService"),
        (ops, "OperatorService"),
        (cmt, "CommitteeService"),
    ):
        service = module.DESCRIPTOR.services_by_name[name]
        for method in service.methods:
            found.append(
                Rpc(
                    f"/{service.full_name}/{method.name}",
                    message_factory.GetMessageClass(method.input_type),
                    method.client_streaming,
                    method.server_streaming,
                )
            )
    return found


RPCS = _rpcs()
BY_NAME = {rpc.name: rpc for rpc in RPCS}
AUTHENTICATED = [
    rpc
    for rpc in RPCS
    if not rpc.path.startswith("/hefl.v1.OperatorService/") and rpc.name != "EnrollWorker"
]
assert len(RPCS) == 16


@dataclass(frozen=True)
class Outcome:
    """How a call ended."""

    code: grpc.StatusCode
    details: str
    responses: tuple[bytes, ...] = ()


def invoke(
    channel: grpc.Channel,
    rpc: Rpc,
    requests: Sequence[bytes],
    metadata: Metadata | None,
    timeout: float | None = None,
) -> Outcome:
    """Sends serialized requests (any bytes) with a deadline; never raises for a status."""
    if timeout is None:
        timeout = WATCH_TIMEOUT if rpc.path in WATCH_STREAMS else CALL_TIMEOUT
    responses: list[bytes] = []
    try:
        if rpc.client_streaming:
            upload = channel.stream_unary(rpc.path, None, None)
            responses.append(upload(iter(list(requests)), timeout=timeout, metadata=metadata))
        elif rpc.server_streaming:
            stream = channel.unary_stream(rpc.path, None, None)
            for response in stream(requests[0], timeout=timeout, metadata=metadata):
                responses.append(response)
        else:
            unary = channel.unary_unary(rpc.path, None, None)
            responses.append(unary(requests[0], timeout=timeout, metadata=metadata))
    except grpc.RpcError as error:
        call = cast(grpc.Call, error)
        return Outcome(call.code(), call.details() or "", tuple(responses))
    return Outcome(OK, "", tuple(responses))


# --- known bugs -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """What a fuzz example sent, for the known-bug predicates."""

    rpc: Rpc
    requests: tuple[bytes, ...]
    metadata: Metadata | None


def _parsed(call: Call) -> list[Message] | None:
    try:
        return [call.rpc.request.FromString(raw) for raw in call.requests]
    except DecodeError:
        return None


@dataclass(frozen=True)
class KnownBug:
    """A status outside the documented set, reproduced by ``test_reproducer``."""

    name: str
    matches: Callable[[Call], bool]
    details: str  # what the UNKNOWN status names


# None open. The eight found so far are fixed; FIXED_BUGS replays each (test_regression).
KNOWN_BUGS: tuple[KnownBug, ...] = ()


def documented(outcome: Outcome) -> bool:
    """Whether the status is one the protocol documents for what the coordinator decided."""
    return outcome.code in DOCUMENTED and TRAILER_TOO_LARGE not in outcome.details


def known_bug(call: Call, outcome: Outcome) -> KnownBug | None:
    """The known bug explaining an undocumented status, if any."""
    if documented(outcome) or outcome.code not in (UNKNOWN, EXHAUSTED):
        return None
    for bug in KNOWN_BUGS:
        if bug.details in outcome.details and bug.matches(call):
            return bug
    return None


def check_status(call: Call, outcome: Outcome, hits: list[str] | None = None) -> None:
    """The status is documented, a watch stream's deadline, or a known bug."""
    note(f"{call.rpc.name}: {outcome.code.name}")
    if documented(outcome):
        return
    if outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED and call.rpc.path in WATCH_STREAMS:
        return
    bug = known_bug(call, outcome)
    assert bug is not None, (
        f"{call.rpc.path} ended with {outcome.code.name}: {outcome.details!r}\n"
        f"requests={[r[:200] for r in call.requests]!r}\nmetadata={call.metadata!r}"
    )
    if hits is not None:
        hits.append(bug.name)


# --- the coordinator under test -------------------------------------------------------------------


def enroll_request(key: SigningKey, key_holder: bool = False) -> fed.EnrollWorkerRequest:
    now = int(time.time())
    return fed.EnrollWorkerRequest(
        federation_id=FEDERATION,
        signing_public_key=key.public_bytes,
        display_name="fuzz",
        key_holder_capable=key_holder,
        request_time=Timestamp(seconds=now),
        proof_of_possession=key.sign(
            SignatureTag.ENROLL, enrollment_proof_message(FEDERATION, key.public_bytes, now)
        ),
    )


@dataclass
class Upload:
    """A payload and frames and trailers for one task (well-formed unless made otherwise)."""

    task: fed.TaskAssignment
    key: SigningKey
    payload: bytes

    @property
    def descriptor(self) -> common.RoundDescriptor:
        return common.RoundDescriptor.FromString(self.task.descriptor.descriptor)

    def header(self, start: int = 0) -> fed.UploadHeader:
        return fed.UploadHeader(
            task_id=self.task.task_id,
            round_number=self.descriptor.round_number,
            profile=common.CRYPTO_PROFILE_PLAINTEXT,
            payload_format_version=plaintext_update.FORMAT_VERSION,
            total_size_bytes=len(self.payload),
            start_offset_bytes=start,
        )

    def statement(self, **changes: Any) -> common.UploadStatement:
        statement = common.UploadStatement(
            federation_id=FEDERATION,
            round_number=self.descriptor.round_number,
            worker_id=self.key.worker_id,
            descriptor_sha256=hashlib.sha256(self.task.descriptor.descriptor).digest(),
            profile=common.CRYPTO_PROFILE_PLAINTEXT,
            payload_format_version=plaintext_update.FORMAT_VERSION,
            payload_size_bytes=len(self.payload),
            payload_sha256=hashlib.sha256(self.payload).digest(),
            sealed_shares_sha256=b"",
        )
        for name, value in changes.items():
            setattr(statement, name, value)
        return statement

    def trailer(self, statement: bytes | None = None) -> fed.UploadTrailer:
        raw = self.statement().SerializeToString() if statement is None else statement
        return fed.UploadTrailer(
            payload_sha256=hashlib.sha256(self.payload).digest(),
            statement=common.SignedUploadStatement(
                statement=raw, signature=self.key.sign(SignatureTag.UPLOAD_STATEMENT, raw)
            ),
        )

    def chunk(self, offset: int, size: int = FRAME) -> fed.UploadUpdateRequest:
        data = self.payload[offset : offset + size]
        return fed.UploadUpdateRequest(chunk=common.Chunk(offset_bytes=offset, data=data))

    def frames(self, start: int = 0) -> list[fed.UploadUpdateRequest]:
        frames = [fed.UploadUpdateRequest(header=self.header(start))]
        frames += [self.chunk(o) for o in range(start, len(self.payload), FRAME)]
        frames.append(fed.UploadUpdateRequest(trailer=self.trailer()))
        return frames


def valid_payload(seed: int = 0) -> bytes:
    delta = np.random.default_rng(seed).normal(0, 0.01, PARAMETERS).astype(np.float32)
    return plaintext_update.encode(delta)


@dataclass(frozen=True)
class Snapshot:
    """The accepted state that bad input must not change."""

    workers: frozenset[str]
    accepted_rows: int
    contributors: int
    aggregated: int
    honest_committed: int
    honest_blob_size: int
    round_number: int


@dataclass
class Harness:
    """The coordinator, its loop thread, a client channel and the fuzzing identities."""

    tmp: Path
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    thread: threading.Thread | None = None
    coordinator: Coordinator | None = None
    channel: grpc.Channel | None = None
    fuzzer: SigningKey = field(default_factory=SigningKey.generate)  # enrolled, no key holder
    capable: SigningKey = field(default_factory=SigningKey.generate)  # key holder, no member
    stranger: SigningKey = field(default_factory=SigningKey.generate)  # never enrolled
    honest: Upload | None = None
    fuzzer_task: str = ""
    round_number: int = 0
    accepted: int = 0  # uploads this module expects accepted
    workers: set[str] = field(default_factory=set)
    bug_hits: list[str] = field(default_factory=list)
    seed: int = 1
    honest_done: bool = False  # set once the last test completed the honest upload

    # -- lifecycle --

    def start(self) -> None:
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        settings = coordinator_settings(
            self.tmp,
            PARAMETERS,
            **{
                "round.collect_seconds": 900,
                "round.interval_seconds": 901,
                "round.goal_contributors": 100_000,
                "round.min_contributors": 1,
                "limits.max_chunk_size_bytes": CHUNK_LIMIT,
                "limits.max_payload_size_bytes": PAYLOAD_LIMIT,
                "limits.max_calls_per_worker_per_minute": 1_000_000,
            },
        )
        self.coordinator = self.run(start(build_config(overrides=settings)))
        self.channel = grpc.insecure_channel(self.coordinator.grpc_address)
        deadline = time.monotonic() + 15
        while self.run(self._open_round()) == 0:
            assert time.monotonic() < deadline, "no round opened"
            time.sleep(0.02)
        self.round_number = self.run(self._open_round())
        self.enroll(self.fuzzer)
        self.enroll(self.capable, key_holder=True)
        self.fuzzer_task = self.task(self.fuzzer).task_id
        honest_key = SigningKey.generate()
        self.enroll(honest_key)
        self.honest = Upload(self.task(honest_key), honest_key, valid_payload())
        # Header and the first two chunks: a pause half way, resumed by the last test.
        response = self.call_ok(
            "UploadUpdate",
            self.honest.frames()[:3],
            key=honest_key,
            response=fed.UploadUpdateResponse,
        )
        assert response.committed_size_bytes == 2 * FRAME

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.coordinator is not None:
            self.run(self.coordinator.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self.thread is not None:
            self.thread.join(10)

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    async def _open_round(self) -> int:
        assert self.coordinator is not None
        active = self.coordinator.engine.current
        return 0 if active is None or active.closed.is_set() else active.number

    # -- calls --

    @property
    def grpc(self) -> grpc.Channel:
        assert self.channel is not None
        return self.channel

    def md(self, key: SigningKey | None, rpc: Rpc) -> Metadata | None:
        return None if key is None else call_metadata(key, rpc.path)

    def call(
        self, name: str, requests: Sequence[Message], key: SigningKey | None = None
    ) -> Outcome:
        rpc = BY_NAME[name]
        raw = tuple(r.SerializeToString() for r in requests)
        return invoke(self.grpc, rpc, raw, self.md(key, rpc))

    def call_ok(
        self,
        name: str,
        requests: Sequence[Message],
        *,
        key: SigningKey | None,
        response: type[M],
    ) -> M:
        outcome = self.call(name, requests, key)
        assert outcome.code == OK, outcome
        return response.FromString(outcome.responses[0])

    def enroll(self, key: SigningKey, key_holder: bool = False) -> None:
        self.call_ok(
            "EnrollWorker",
            [enroll_request(key, key_holder)],
            key=None,
            response=fed.EnrollWorkerResponse,
        )
        self.workers.add(key.worker_id)

    def task(self, key: SigningKey) -> fed.TaskAssignment:
        answer = self.call_ok(
            "CheckIn",
            [fed.CheckInRequest(federation_id=FEDERATION)],
            key=key,
            response=fed.CheckInResponse,
        )
        assert answer.WhichOneof("outcome") == "task", answer
        return answer.task

    def status(self, key: SigningKey, task_id: str) -> fed.GetUploadStatusResponse:
        return self.call_ok(
            "GetUploadStatus",
            [fed.GetUploadStatusRequest(task_id=task_id)],
            key=key,
            response=fed.GetUploadStatusResponse,
        )

    def fresh_upload(self, payload: bytes | None = None) -> Upload:
        key = SigningKey.generate()
        self.enroll(key)
        self.seed += 1
        return Upload(self.task(key), key, valid_payload(self.seed) if payload is None else payload)

    # -- invariants --

    def snapshot(self) -> Snapshot:
        return self.run(self._snapshot())

    async def _snapshot(self) -> Snapshot:
        assert self.coordinator is not None and self.honest is not None
        store = self.coordinator.store
        active = self.coordinator.engine.current
        assert active is not None, "the round closed during the fuzzing"
        honest = store.get_upload(self.honest.task.task_id)
        assert honest is not None
        return Snapshot(
            workers=frozenset(w.worker_id for w in store.list_workers()),
            accepted_rows=len(store.accepted_uploads(active.number, fed.UPLOAD_STATE_ACCEPTED)),
            contributors=active.contributors,
            aggregated=active.aggregate.count,
            honest_committed=honest.committed_size,
            honest_blob_size=store.blobs.size(honest.blob_name),
            round_number=active.number,
        )

    def check_invariants(self) -> None:
        """Only this module's valid actions changed the accepted state."""
        now = self.snapshot()
        assert now.round_number == self.round_number
        assert now.workers == frozenset(self.workers)
        assert now.accepted_rows == now.contributors == now.aggregated == self.accepted
        assert self.honest is not None
        honest = len(self.honest.payload) if self.honest_done else 2 * FRAME
        assert now.honest_committed == now.honest_blob_size == honest

    def check_serving(self) -> None:
        """Health says SERVING and a fresh device still gets a valid upload accepted."""
        health = health_pb2_grpc.HealthStub(self.grpc)
        for service in ("", *SERVICE_NAMES):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        upload = self.fresh_upload()
        response = self.call_ok(
            "UploadUpdate", upload.frames(), key=upload.key, response=fed.UploadUpdateResponse
        )
        assert response.state == fed.UPLOAD_STATE_ACCEPTED
        self.accepted += 1
        self.check_invariants()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = Harness(tmp_path_factory.mktemp("fuzz"))
    try:
        harness.start()
        yield harness
    finally:
        harness.stop()


# --- request strategies ---------------------------------------------------------------------------

HUGE_TEXT = "\u00e9" * 300_000  # 600 KB of UTF-8, well below the 8 MiB message limit
HUGE_BYTES = b"\xff" * 700_000
_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)

_INT_RANGES = {
    FieldDescriptor.TYPE_UINT64: (0, U64),
    FieldDescriptor.TYPE_FIXED64: (0, U64),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
}


@dataclass(frozen=True)
class Hints:
    """Values that reach past the first checks: real ids, digests, versions."""

    texts: tuple[str, ...]
    blobs: tuple[bytes, ...]


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = sorted(
        {v for v in (low, high, 0, 1, 2, 3, 2**31, 2**32, 2**63 - 1, 2**63) if low <= v <= high}
    )
    return st.one_of(st.sampled_from(edges), st.integers(0, 8), st.integers(low, high))


def _scalar(fd: FieldDescriptor, hints: Hints, depth: int) -> st.SearchStrategy[Any]:
    if fd.type == FieldDescriptor.TYPE_STRING:
        return st.one_of(_TEXT, st.sampled_from(hints.texts), st.just(HUGE_TEXT))
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=80), st.sampled_from(hints.blobs), st.just(HUGE_BYTES))
    if fd.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if fd.type == FieldDescriptor.TYPE_DOUBLE:
        return st.floats()
    if fd.type == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if fd.type == FieldDescriptor.TYPE_ENUM:
        assert fd.enum_type is not None
        numbers = [v.number for v in fd.enum_type.values]
        weird = [max(numbers) + 1, -1, 2**31 - 1, -(2**31)]
        return st.one_of(st.sampled_from(numbers + weird), st.integers(-(2**31), 2**31 - 1))
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        assert fd.message_type is not None
        return messages(fd.message_type, hints, depth + 1)
    low, high = _INT_RANGES[fd.type]
    return integers(low, high)


def messages(descriptor: Descriptor, hints: Hints, depth: int = 0) -> st.SearchStrategy[Message]:
    """Any message of ``descriptor``: random fields, out-of-range enums, huge and empty values."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 2:
        return st.just(cls())
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for fd in descriptor.fields:
        entry = fd.message_type
        value: st.SearchStrategy[Any]
        if entry is not None and entry.GetOptions().map_entry:
            value = st.dictionaries(
                _scalar(entry.fields_by_name["key"], hints, depth),
                _scalar(entry.fields_by_name["value"], hints, depth),
                max_size=3,
            )
        elif fd.is_repeated:
            value = st.lists(_scalar(fd, hints, depth), max_size=3)
        else:
            value = _scalar(fd, hints, depth)
        fields[fd.name] = st.one_of(st.none(), value)

    def build(values: dict[str, Any]) -> Message:
        message = cls()
        for name, value in values.items():
            if value is None:
                continue
            target = getattr(message, name)
            fd = descriptor.fields_by_name[name]
            map_entry = fd.message_type is not None and fd.message_type.GetOptions().map_entry
            if map_entry:
                for k, v in value.items():
                    if isinstance(v, Message):
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif fd.is_repeated:
                for item in value:
                    if isinstance(item, Message):
                        target.add().CopyFrom(item)
                    else:
                        target.append(item)
            elif isinstance(value, Message):
                target.CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries(fields).map(build)


def descriptor_of(rpc: Rpc) -> Descriptor:
    return cast(Descriptor, rpc.request.DESCRIPTOR)


def hints_for(harness: Harness) -> Hints:
    assert harness.honest is not None
    keys = (harness.fuzzer, harness.capable, harness.stranger, harness.honest.key)
    return Hints(
        texts=(
            FEDERATION,
            FEDERATION,
            "",
            "other-fed",
            harness.fuzzer_task,
            harness.honest.task.task_id,
            "r1-0000000000000000",
            *(k.worker_id for k in keys),
        ),
        blobs=(
            b"",
            b"\x00" * 32,
            b"\x00" * 64,
            hashlib.sha256(b"").digest(),
            *(k.public_bytes for k in keys),
        ),
    )


CALLERS = ("fuzzer", "capable", "stranger", "anonymous")


def caller_key(harness: Harness, caller: str) -> SigningKey | None:
    return {
        "fuzzer": harness.fuzzer,
        "capable": harness.capable,
        "stranger": harness.stranger,
        "anonymous": None,
    }[caller]


def _expect_workers(harness: Harness, call: Call, outcome: Outcome) -> None:
    """A successful EnrollWorker is the one way to add a worker."""
    if call.rpc.name == "EnrollWorker" and outcome.code == OK:
        request = fed.EnrollWorkerRequest.FromString(call.requests[0])
        harness.workers.add(worker_id_for(request.signing_public_key))


# --- 1. random messages to every RPC --------------------------------------------------------------


def test_random_messages_to_every_rpc_get_documented_statuses(harness: Harness) -> None:
    hints = hints_for(harness)

    @fuzz_settings(200)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        rpc = data.draw(st.sampled_from(RPCS), label="rpc")
        caller = data.draw(st.sampled_from(CALLERS), label="caller")
        strategy = messages(descriptor_of(rpc), hints)
        count = data.draw(st.integers(0, 4)) if rpc.client_streaming else 1
        requests = [data.draw(strategy, label=f"request {i}") for i in range(count)]
        key = caller_key(harness, caller)
        call = Call(rpc, tuple(r.SerializeToString() for r in requests), harness.md(key, rpc))
        outcome = invoke(harness.grpc, rpc, call.requests, call.metadata)
        check_status(call, outcome, harness.bug_hits)
        if rpc.path.startswith("/hefl.v1.CommitteeService/") and caller in ("fuzzer", "stranger"):
            # Not a key holder, or not enrolled at all: refused before the request is read.
            assert outcome.code in (DENIED, UNAUTHENTICATED), outcome
        _expect_workers(harness, call, outcome)
        harness.check_invariants()

    fuzz()
    harness.check_serving()


# --- 2. bytes that are not (or barely) protobuf ---------------------------------------------------


def _flip(example: bytes, at: int, mask: int, tail: bytes) -> bytes:
    if not example:
        return tail
    return example[:at] + bytes([example[at] ^ mask]) + example[at + 1 :] + tail


def _garbage(example: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes, and mutations of a real message that break its wire format."""
    mutated = st.builds(
        _flip,
        st.just(example),
        st.integers(0, max(len(example) - 1, 0)),
        st.integers(1, 255),
        st.binary(max_size=8),
    )
    crafted = st.sampled_from(
        [
            b"\xff\xff\xff",
            b"\x08\xff",  # truncated varint
            b"\x0a\xff\xff\xff\xff\x0f",  # a length far beyond the message
            b"\x0a\x02\xc3\x28",  # invalid UTF-8 in field 1 (a string in most requests)
            b"\x0b\x0c",  # a group start with a mismatched end
            b"\x0c",  # an end-group tag alone
            b"\x07",  # wire type 7 does not exist
            b"\x00",  # field number 0
            b"\x12\x00" * 1000,  # 1000 empty occurrences of field 2
        ]
    )
    return st.one_of(
        st.binary(max_size=256), mutated, crafted, st.just(example[: len(example) // 2])
    )


def test_non_protobuf_bytes_get_documented_statuses(harness: Harness) -> None:
    hints = hints_for(harness)

    @fuzz_settings(150)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        rpc = data.draw(st.sampled_from(RPCS), label="rpc")
        caller = data.draw(st.sampled_from(("fuzzer", "capable", "anonymous")), label="caller")
        example = data.draw(
            messages(descriptor_of(rpc), hints).map(lambda m: m.SerializeToString())
        )
        count = data.draw(st.integers(1, 3)) if rpc.client_streaming else 1
        requests = tuple(data.draw(_garbage(example), label=f"bytes {i}") for i in range(count))
        key = caller_key(harness, caller)
        call = Call(rpc, requests, harness.md(key, rpc))
        outcome = invoke(harness.grpc, rpc, requests, call.metadata)
        check_status(call, outcome, harness.bug_hits)
        _expect_workers(harness, call, outcome)
        harness.check_invariants()

    fuzz()
    harness.check_serving()


# --- 3. call authentication -----------------------------------------------------------------------

_PRINTABLE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20)


def _metadata_mutation(harness: Harness) -> st.SearchStrategy[tuple[str, str | bytes | None]]:
    """One change to a valid set of call headers: (header, new value or None to drop it)."""
    now = int(time.time() * 1000)
    return st.one_of(
        st.tuples(
            st.just("hefl-worker-id"),
            st.one_of(
                st.sampled_from(
                    [harness.capable.worker_id, harness.stranger.worker_id, "", "x" * 2000]
                ),
                _PRINTABLE,
            ),
        ),
        st.tuples(
            st.just("hefl-call-time"),
            st.one_of(
                st.integers(301_000, 10**12).flatmap(
                    lambda d: st.sampled_from([str(now + d), str(now - d)])
                ),
                st.sampled_from(
                    ["", "abc", "-1", "1e3", "0x10", " 12", str(2**64), "9" * 400, "-" + "9" * 400]
                ),
                _PRINTABLE,
            ),
        ),
        st.tuples(
            st.just("hefl-call-nonce"),
            st.one_of(
                st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=7),
                st.text(
                    st.characters(min_codepoint=0x21, max_codepoint=0x7E),
                    min_size=65,
                    max_size=200,
                ),
                st.just("a-fresh-valid-nonce-0123"),
            ),
        ),
        st.tuples(
            st.just("hefl-call-signature-bin"),
            st.one_of(st.binary(max_size=80), st.just(b"")),
        ),
        st.tuples(
            st.sampled_from(
                ["hefl-worker-id", "hefl-call-time", "hefl-call-nonce", "hefl-call-signature-bin"]
            ),
            st.none(),
        ),
    )


def signed_headers(
    key: SigningKey, method: str, worker_id: str, time_ms: str, nonce: str
) -> dict[str, str | bytes]:
    """Call headers signed as docs/protocol.md ("Call authentication") specifies."""
    message = "\n".join((method, worker_id, time_ms, nonce)).encode()
    return {
        "hefl-worker-id": worker_id,
        "hefl-call-time": time_ms,
        "hefl-call-nonce": nonce,
        "hefl-call-signature-bin": key.sign(SignatureTag.CALL, message),
    }


_NONCE_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


def test_call_authentication_refuses_every_altered_header(harness: Harness) -> None:
    @fuzz_settings(100)
    @given(data=st.data())
    def fuzz(data: st.DataObject) -> None:
        rpc = data.draw(st.sampled_from(AUTHENTICATED), label="rpc")
        # What the device signs: each part may break one rule of the claim, validly signed.
        signed_for = data.draw(st.sampled_from([rpc, rpc, rpc, *AUTHENTICATED]), label="method")
        claimed = data.draw(
            st.sampled_from([harness.fuzzer.worker_id] * 3 + [harness.capable.worker_id]),
            label="claimed worker",
        )
        skew = data.draw(
            st.one_of(
                st.just(0),
                st.integers(-290, 290),
                st.integers(310, 10**7).flatmap(lambda d: st.sampled_from([d, -d])),
            ),
            label="clock skew (s)",
        )
        drawn = data.draw(
            st.one_of(
                st.text(_NONCE_CHARS, min_size=8, max_size=64),
                st.text(_NONCE_CHARS, min_size=1, max_size=7),
                st.text(_NONCE_CHARS, min_size=65, max_size=100),
            ),
            label="nonce",
        )
        # Same length, but unique across examples so only the deliberate replay is a replay.
        harness.seed += 1
        nonce = (f"{harness.seed:08x}" + drawn)[: len(drawn)]
        time_ms = str(int((time.time() + skew) * 1000))
        headers = signed_headers(harness.fuzzer, signed_for.path, claimed, time_ms, nonce)
        original = dict(headers)
        # Then the headers may be altered after signing.
        for name, value in data.draw(
            st.lists(_metadata_mutation(harness), max_size=2), label="altered"
        ):
            if value is None:
                headers.pop(name, None)
            else:
                headers[name] = value
        valid = (
            signed_for == rpc
            and claimed == harness.fuzzer.worker_id
            and abs(skew) <= 290
            and 8 <= len(nonce) <= 64
            and headers == original
        )
        request = rpc.request()
        if hasattr(request, "federation_id"):
            request.federation_id = FEDERATION  # type: ignore[attr-defined]
        call = Call(rpc, (request.SerializeToString(),), tuple(headers.items()))
        replays = 2 if data.draw(st.booleans(), label="replay") else 1
        for attempt in range(replays):
            outcome = invoke(harness.grpc, rpc, call.requests, call.metadata)
            check_status(call, outcome, harness.bug_hits)
            if valid and attempt == 0:
                assert outcome.code != UNAUTHENTICATED, outcome
            elif outcome.code != UNAUTHENTICATED:
                # Refused for its identity, or a known bug (an UNKNOWN it explains).
                assert known_bug(call, outcome) is not None, (headers, attempt, outcome)
        harness.check_invariants()

    fuzz()
    harness.check_serving()


# --- 4. enrolment ---------------------------------------------------------------------------------

# (field change, whether the request stays valid)
_ENROLL_CHANGES: dict[str, bool] = {
    "display_name=huge": False,  # strings over 1,024 characters are INVALID_ARGUMENT
    "display_name=empty": True,
    "key_holder=True": True,
    "token=random": True,  # no tokens configured: any token is accepted
    "federation=other": False,
    "federation=empty": False,
    "key=truncated": False,
    "key=other": False,
    "proof=flipped": False,
    "proof=empty": False,
    "time=stale": False,
    "time=future": False,
    "time=unset": False,
    "time=other-second": False,
}


def test_enrollment_accepts_exactly_the_valid_requests(harness: Harness) -> None:
    @fuzz_settings(60)
    @given(
        changes=st.lists(
            st.sampled_from(sorted(_ENROLL_CHANGES)),
            max_size=3,
            unique_by=lambda change: change.split("=")[0],
        ),
        repeat=st.booleans(),
    )
    def fuzz(changes: list[str], repeat: bool) -> None:
        key = SigningKey.generate()
        request = enroll_request(key)
        for change in changes:
            what, value = change.split("=")
            if what == "display_name":
                request.display_name = HUGE_TEXT if value == "huge" else ""
            elif what == "key_holder":
                request.key_holder_capable = True
            elif what == "token":
                request.enrollment_token = "anything"
            elif what == "federation":
                request.federation_id = "" if value == "empty" else "other-fed"
            elif what == "key":
                request.signing_public_key = (
                    key.public_bytes[:31] if value == "truncated" else harness.fuzzer.public_bytes
                )
            elif what == "proof":
                proof = request.proof_of_possession
                request.proof_of_possession = (
                    b"" if value == "empty" else bytes([proof[0] ^ 1]) + proof[1:]
                )
            elif value == "unset":
                request.ClearField("request_time")
            else:
                shift = {"stale": -301, "future": 301, "other-second": 1}[value]
                request.request_time.seconds += shift
        valid = all(_ENROLL_CHANGES[c] for c in changes)
        attempts = 2 if repeat else 1
        for _ in range(attempts):
            outcome = harness.call("EnrollWorker", [request])
            check_status(
                Call(BY_NAME["EnrollWorker"], (request.SerializeToString(),), None), outcome
            )
            if valid:
                assert outcome.code == OK, (changes, outcome)
                answer = fed.EnrollWorkerResponse.FromString(outcome.responses[0])
                assert answer.worker_id == key.worker_id
                harness.workers.add(key.worker_id)
            else:
                assert outcome.code in (INVALID, NOT_FOUND, UNAUTHENTICATED), (changes, outcome)
            harness.check_invariants()

    fuzz()
    harness.check_serving()


# --- 5. upload streams against a model of the framing ---------------------------------------------


@dataclass
class UploadModel:
    """What uploads.py must do with a stream (docs/protocol.md, "Framed, resumable transfers")."""

    own_task: str
    other_task: str
    round_number: int
    payload: bytes  # the bytes the well-formed frames carry
    decodes: bool  # whether that payload is a valid plaintext update
    exists: bool = False
    total: int = 0
    data: bytearray = field(default_factory=bytearray)
    accepted: bool = False
    counting: bool = False  # whether checks count towards SEEN (not for probes)

    def stream(self, frames: Sequence[tuple[str, fed.UploadUpdateRequest]]) -> grpc.StatusCode:
        """Applies a stream to the model and returns the status the coordinator must answer."""
        if not frames or frames[0][1].WhichOneof("frame") != "header":
            return INVALID
        header = frames[0][1].header
        if not header.task_id:
            return INVALID
        if header.task_id == self.other_task:
            return DENIED
        if header.task_id != self.own_task:
            return NOT_FOUND
        if header.profile != common.CRYPTO_PROFILE_PLAINTEXT:
            return INVALID
        if header.payload_format_version != plaintext_update.FORMAT_VERSION:
            return INVALID
        if header.round_number != self.round_number:
            return PRECONDITION
        if header.total_size_bytes == 0:
            return INVALID
        if header.total_size_bytes > PAYLOAD_LIMIT:
            return EXHAUSTED
        if self.accepted:
            return EXISTS
        if not self.exists:
            if header.start_offset_bytes != 0:
                return PRECONDITION
            self.exists, self.total = True, header.total_size_bytes
        elif header.total_size_bytes != self.total:
            return INVALID
        elif header.start_offset_bytes != len(self.data):
            return PRECONDITION
        for label, frame in frames[1:]:
            kind = frame.WhichOneof("frame")
            if kind == "chunk":
                chunk = frame.chunk
                if len(chunk.data) > CHUNK_LIMIT:
                    return EXHAUSTED
                if not chunk.data or chunk.offset_bytes != len(self.data):
                    return INVALID
                if len(self.data) + len(chunk.data) > self.total:
                    return INVALID
                self.data += chunk.data
            elif kind == "trailer":
                if len(self.data) != self.total:
                    return INVALID
                if frame.trailer.payload_sha256 != hashlib.sha256(self.data).digest():
                    self.data.clear()
                    return DATA_LOSS
                if self.counting:
                    SEEN[f"upload model: trailer {label} checked"] += 1
                if label == "bad-signature":
                    return UNAUTHENTICATED
                if label != "valid" or not self.decodes:
                    return INVALID
                self.accepted = True
                return OK
            else:
                return INVALID
        return OK

    def copy(self) -> UploadModel:
        return replace(self, data=bytearray(self.data), counting=False)

    def state(self) -> tuple[int, int, int]:
        if self.accepted:
            return fed.UPLOAD_STATE_ACCEPTED, self.total, self.total
        if self.exists:
            return fed.UPLOAD_STATE_RECEIVING, len(self.data), self.total
        return fed.UPLOAD_STATE_NOT_STARTED, 0, 0


PAYLOAD_KINDS = ("valid", "random", "nan", "short", "magic", "format")


def _payload(kind: str, seed: int, noise: bytes) -> bytes:
    payload = bytearray(valid_payload(seed))
    if kind == "random":
        return noise or b"\x00"
    if kind == "nan":
        payload[20 + 4 * (seed % PARAMETERS) : 24 + 4 * (seed % PARAMETERS)] = np.float32(
            np.nan
        ).tobytes()
    elif kind == "short":
        return bytes(payload[:-4])
    elif kind == "magic":
        payload[0] ^= 0x20
    elif kind == "format":
        payload[8] = 2
    return bytes(payload)


HEADER_CHANGES: dict[str, tuple[str, Any]] = {
    "task=empty": ("task_id", ""),
    "task=unknown": ("task_id", "r1-ffffffffffffffff"),
    "task=honest": ("task_id", None),
    "profile=unspecified": ("profile", 0),
    "profile=fast": ("profile", 2),
    "profile=oneshot": ("profile", 4),
    "profile=99": ("profile", 99),
    "profile=negative": ("profile", -7),
    "format=0": ("payload_format_version", 0),
    "format=2": ("payload_format_version", 2),
    "format=max": ("payload_format_version", 2**32 - 1),
    "round=next": ("round_number", None),
    "round=max": ("round_number", U64),
    "size=0": ("total_size_bytes", 0),
    "size=plus1": ("total_size_bytes", None),
    "size=minus1": ("total_size_bytes", None),
    "size=limit+1": ("total_size_bytes", PAYLOAD_LIMIT + 1),
    "size=max": ("total_size_bytes", U64),
    "start=one": ("start_offset_bytes", 1),
    "start=frame": ("start_offset_bytes", FRAME),
    "start=2**63": ("start_offset_bytes", 2**63),
    "start=max": ("start_offset_bytes", U64),
}
# Chunks that break the framing rules (and "next": the chunk at the committed offset).
ANOMALIES = (
    "gap",
    "overlap",
    "previous",
    "foreign",
    "huge-offset",
    "wrapping",
    "empty",
    "oversized",
    "past-end",
)
CHUNK_KINDS = ("next", *ANOMALIES)
# Statement fields a trailer may get wrong (signed by the device all the same).
MISMATCHES: dict[str, Any] = {
    "round_number": None,
    "worker_id": "someone-else",
    "profile": 99,
    "payload_format_version": 2,
    "payload_size_bytes": None,
    "federation_id": "other-fed",
    "descriptor_sha256": bytes(32),
    "sealed_shares_sha256": bytes(32),
}
TRAILER_KINDS = (
    "valid",
    "wrong-digest",
    "bad-signature",
    "empty-statement",
    "garbage-statement",
    "extra-shares",
    "empty",
    *(f"mismatch:{name}" for name in MISMATCHES),
)
# A token is resolved against the model when the stream is built: ("chunk", "next") is the
# chunk at the committed offset, so near-valid streams are likely.
Token = tuple[str, str]
_TOKENS = st.one_of(
    st.tuples(st.just("header"), st.sampled_from(["resume", "resume", "zero", *HEADER_CHANGES])),
    st.tuples(st.just("chunk"), st.sampled_from(CHUNK_KINDS)),
    st.tuples(st.just("trailer"), st.sampled_from(TRAILER_KINDS)),
    st.tuples(st.just("none"), st.just("")),
)


def _edit(tokens: list[Token], edits: list[tuple[str, int, int, Token]]) -> list[Token]:
    """Moves, repeats, drops or inserts frames: (operation, index, other index, new token)."""
    tokens = list(tokens)
    for op, i, j, token in edits:
        i, j = i % len(tokens), j % len(tokens)
        if op == "swap":
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "drop" and len(tokens) > 1:
            del tokens[i]
        elif op == "repeat":
            tokens.insert(i, tokens[i])
        elif op == "insert":
            tokens.insert(i, token)
    return tokens


_EDITS = st.lists(
    st.tuples(
        st.sampled_from(["swap", "drop", "repeat", "insert"]),
        st.integers(0, 8),
        st.integers(0, 8),
        _TOKENS,
    ),
    min_size=1,
    max_size=3,
)
_HEADER = st.one_of(st.just("resume"), st.sampled_from(sorted(HEADER_CHANGES)))
_TRAILER = st.one_of(st.just("valid"), st.sampled_from(TRAILER_KINDS))

# Stream shapes, each equally likely: random frames; a complete stream with one trailer variant;
# one header variant; one chunk anomaly after k good chunks (then the rest, and a trailer or a
# pause); and a complete stream with frames moved, repeated, dropped or inserted.
_STREAMS: st.SearchStrategy[list[Token]] = st.one_of(
    st.lists(_TOKENS, max_size=8),
    _TRAILER.map(lambda t: [("header", "resume"), ("chunk", "rest"), ("trailer", t)]),
    _HEADER.map(lambda h: [("header", h), ("chunk", "rest"), ("trailer", "valid")]),
    st.builds(
        lambda k, anomaly, end: [
            ("header", "resume"),
            *[("chunk", "next")] * k,
            ("chunk", anomaly),
            ("chunk", "rest"),
            *([("trailer", end)] if end else []),
        ],
        st.integers(0, 3),
        st.sampled_from(ANOMALIES),
        st.sampled_from(["valid", "valid", None]),
    ),
    st.builds(
        _edit,
        st.builds(
            lambda h, t: [("header", h), *[("chunk", "next")] * 4, ("trailer", t)],
            _HEADER,
            _TRAILER,
        ),
        _EDITS,
    ),
    # A pause after k chunks (resumed by the next stream of the example).
    st.integers(0, 3).map(lambda k: [("header", "resume"), *[("chunk", "next")] * k]),
)


def _resolve(
    token: Token, upload: Upload, model: UploadModel, committed: int, noise: bytes
) -> tuple[str, fed.UploadUpdateRequest]:
    kind, variant = token
    payload = upload.payload
    if kind == "header":
        header = upload.header(committed if variant == "resume" else 0)
        if variant in HEADER_CHANGES:
            name, value = HEADER_CHANGES[variant]
            if variant == "task=honest":
                value = model.other_task
            elif variant == "round=next":
                value = model.round_number + 1
            elif variant == "size=plus1":
                value = len(payload) + 1
            elif variant == "size=minus1":
                value = max(len(payload) - 1, 1)
            setattr(header, name, value)
        return variant, fed.UploadUpdateRequest(header=header)
    if kind == "chunk":
        offset = {
            "next": committed,
            "gap": committed + FRAME,
            "overlap": max(committed - 7, 0) if committed else 3,
            "previous": max(committed - FRAME, 0),
            "foreign": committed,
            "huge-offset": 2**63,
            "wrapping": U64 - 5,
            "empty": committed,
            "oversized": committed,
            "past-end": max(len(payload) - 10, 0),
        }[variant]
        if variant == "foreign":
            data = noise[:FRAME] or b"\x01"
        elif variant == "oversized":
            data = b"\x02" * (CHUNK_LIMIT + 1)
        elif variant == "empty":
            data = b""
        elif variant in ("huge-offset", "wrapping"):
            data = payload[:FRAME]
        elif variant == "past-end":
            data = payload[offset:] + b"\x03" * 100
        else:
            data = payload[offset : offset + FRAME] or b"\x04"
        return variant, fed.UploadUpdateRequest(chunk=common.Chunk(offset_bytes=offset, data=data))
    if kind == "trailer":
        trailer = upload.trailer()
        if variant == "wrong-digest":
            trailer.payload_sha256 = hashlib.sha256(payload + b"!").digest()
        elif variant == "bad-signature":
            trailer.statement.signature = bytes(64)
        elif variant == "empty-statement":
            trailer.statement.statement = b""
            trailer.statement.signature = b""
        elif variant == "garbage-statement":
            trailer = upload.trailer(b"\x0a\x05other" + noise)
        elif variant.startswith("mismatch:"):
            name = variant.split(":", 1)[1]
            value = MISMATCHES[name]
            if name == "round_number":
                value = model.round_number + 1
            elif name == "payload_size_bytes":
                value = len(payload) + 1
            trailer = upload.trailer(upload.statement(**{name: value}).SerializeToString())
        elif variant == "extra-shares":
            trailer.sealed_shares.add(recipient_index=1, ciphertext=noise)
        elif variant == "empty":
            trailer = fed.UploadTrailer()
        return variant, fed.UploadUpdateRequest(trailer=trailer)
    return "none", fed.UploadUpdateRequest()


def play_upload(harness: Harness, kind: str, noise: bytes, streams: list[list[Token]]) -> None:
    """Sends the streams for one fresh task; each must end as the model says."""
    assert harness.honest is not None
    harness.seed += 1
    upload = harness.fresh_upload(_payload(kind, harness.seed, noise))
    model = UploadModel(
        own_task=upload.task.task_id,
        other_task=harness.honest.task.task_id,
        round_number=harness.round_number,
        payload=upload.payload,
        decodes=kind == "valid",
    )
    for tokens in streams:
        # Each token is resolved against the committed size the frames before it leave.
        frames: list[tuple[str, fed.UploadUpdateRequest]] = []
        for token in tokens:
            probe = model.copy()
            probe.stream(frames)
            if token == ("chunk", "rest"):  # every chunk still missing, in order
                size = len(upload.payload)
                frames += [("next", upload.chunk(o)) for o in range(len(probe.data), size, FRAME)]
            else:
                frames.append(_resolve(token, upload, model, len(probe.data), noise))
        model.counting = True
        expected = model.stream(frames)
        model.counting = False
        requests = tuple(f.SerializeToString() for _, f in frames)
        rpc = BY_NAME["UploadUpdate"]
        call = Call(rpc, requests, harness.md(upload.key, rpc))
        outcome = invoke(harness.grpc, rpc, requests, call.metadata)
        check_status(call, outcome, harness.bug_hits)
        labels = [label for label, _ in frames]
        note(f"upload model: {expected.name}")
        assert outcome.code == expected, (kind, labels, outcome, model.state())
        if expected == OK and model.accepted:
            harness.accepted += 1
        status = harness.status(upload.key, upload.task.task_id)
        state = (status.state, status.committed_size_bytes, status.total_size_bytes)
        assert state == model.state(), (kind, labels)
        harness.check_invariants()


def test_upload_streams_follow_the_framing_model(harness: Harness) -> None:
    @fuzz_settings(250)
    @given(
        kind=st.one_of(st.just("valid"), st.sampled_from(PAYLOAD_KINDS)),
        noise=st.binary(min_size=0, max_size=3000),
        streams=st.lists(_STREAMS, min_size=1, max_size=3),
    )
    def fuzz(kind: str, noise: bytes, streams: list[list[Token]]) -> None:
        play_upload(harness, kind, noise, streams)

    fuzz()
    harness.check_serving()


def test_upload_rules_one_by_one(harness: Harness) -> None:
    """Every trailer, header change and chunk anomaly at least once, whatever hypothesis draws."""
    noise = bytes(range(256)) * 4
    complete: list[Token] = [("header", "resume"), ("chunk", "rest")]
    for kind in PAYLOAD_KINDS:
        for trailer in TRAILER_KINDS:
            play_upload(harness, kind, noise, [[*complete, ("trailer", trailer)]])
    for change in HEADER_CHANGES:
        play_upload(harness, "valid", noise, [[("header", change), ("chunk", "rest")]])
    for anomaly in ANOMALIES:
        for k in range(4):
            good: list[Token] = [("chunk", "next")] * k
            play_upload(
                harness, "valid", noise, [[("header", "resume"), *good, ("chunk", anomaly)]]
            )
    # Pauses, resumes and replays.
    for k in range(5):
        pause: list[Token] = [("header", "resume"), *[("chunk", "next")] * k]
        play_upload(harness, "valid", noise, [pause, [*complete, ("trailer", "valid")], complete])
    harness.check_serving()


# --- 6. downloads against a model of the versions -------------------------------------------------


def test_download_requests_follow_the_version_model(harness: Harness) -> None:
    assert harness.honest is not None
    descriptor = harness.honest.descriptor
    rpc = BY_NAME["DownloadModel"]

    def download(request: fed.DownloadModelRequest) -> tuple[Call, Outcome]:
        call = Call(rpc, (request.SerializeToString(),), harness.md(harness.fuzzer, rpc))
        return call, invoke(harness.grpc, rpc, call.requests, call.metadata)

    def reassemble(outcome: Outcome, offset: int) -> tuple[fed.ModelHeader, bytes]:
        frames = [fed.DownloadModelResponse.FromString(r) for r in outcome.responses]
        kinds = [f.WhichOneof("frame") for f in frames]
        assert kinds[0] == "header" and kinds[-1] == "trailer"
        assert set(kinds[1:-1]) <= {"chunk"}
        data = bytearray()
        for frame in frames[1:-1]:
            assert frame.chunk.offset_bytes == offset + len(data)
            data += frame.chunk.data
        assert frames[-1].trailer.payload_sha256 == frames[0].header.payload_sha256
        return frames[0].header, bytes(data)

    # References: the full model (whose digest the round descriptor names) and the (1, 1) payload.
    references: dict[int, tuple[fed.ModelHeader, bytes]] = {}
    for have in (0, 1):
        _, outcome = download(
            fed.DownloadModelRequest(federation_id=FEDERATION, have_version=have, want_version=1)
        )
        assert outcome.code == OK, outcome
        header, data = reassemble(outcome, 0)
        assert header.total_size_bytes == len(data)
        assert hashlib.sha256(data).digest() == header.payload_sha256
        references[have] = header, data
    assert references[0][0].payload_sha256 == descriptor.global_model_sha256

    versions = st.one_of(st.sampled_from([0, 1, 2, 7, 2**63 - 1, 2**63, U64]), integers(0, U64))

    @fuzz_settings(100)
    @given(
        federation=st.sampled_from([FEDERATION, FEDERATION, FEDERATION, "", "other-fed"]),
        have=st.one_of(st.sampled_from([0, 0, 1, 2, U64]), integers(0, U64)),
        want=versions,
        offset=st.one_of(
            st.sampled_from(["0", "1", "mid", "len-1", "len", "len+1", "2**63", "max"]),
            integers(0, U64).map(str),
        ),
        expected=st.sampled_from(["right", "right", "empty", "other"]),
    )
    def fuzz(federation: str, have: int, want: int, offset: str, expected: str) -> None:
        target = 1 if want == 0 else want
        reference = references.get(have if have <= 1 else 0)
        assert reference is not None
        header, full = reference
        size = len(full)
        at = {
            "0": 0,
            "1": 1,
            "mid": size // 2,
            "len-1": size - 1,
            "len": size,
            "len+1": size + 1,
            "2**63": 2**63,
            "max": U64,
        }.get(offset)
        start = int(offset) if at is None else at
        digest = {"right": header.payload_sha256, "empty": b"", "other": bytes(32)}[expected]
        request = fed.DownloadModelRequest(
            federation_id=federation,
            have_version=have,
            want_version=want,
            offset_bytes=start,
            expected_sha256=digest,
        )
        call, outcome = download(request)
        check_status(call, outcome, harness.bug_hits)
        if not federation:
            assert outcome.code == INVALID, outcome
        elif federation != FEDERATION or target != 1:
            assert outcome.code == NOT_FOUND, outcome
        elif have > target or start and digest != header.payload_sha256:
            assert outcome.code == PRECONDITION, outcome
        elif start > size:
            assert outcome.code == INVALID, outcome
        else:
            assert outcome.code == OK, outcome
            got, data = reassemble(outcome, start)
            assert got == header
            assert data == full[start:]
        harness.check_invariants()

    fuzz()
    harness.check_serving()


# --- 7. minimal reproducers of the statuses outside the documented set ----------------------------


def _reproducers(harness: Harness) -> dict[str, Call]:
    def signed(name: str, request: Message, key: SigningKey | None = None) -> Call:
        rpc = BY_NAME[name]
        return Call(rpc, (request.SerializeToString(),), harness.md(key or harness.fuzzer, rpc))

    upload = harness.fresh_upload()
    header = upload.header()
    header.profile = 99  # type: ignore[assignment]
    metadata = dict(call_metadata(harness.fuzzer, BY_NAME["CheckIn"].path))
    metadata["hefl-call-time"] = "1" + "0" * 400
    return {
        "unparsable-request": Call(
            BY_NAME["CheckIn"], (b"\xff\xff\xff",), harness.md(harness.fuzzer, BY_NAME["CheckIn"])
        ),
        "list-rounds-before-round": signed(
            "ListRounds", ops.ListRoundsRequest(federation_id=FEDERATION, before_round=2**63)
        ),
        "download-want-version": signed(
            "DownloadModel", fed.DownloadModelRequest(federation_id=FEDERATION, want_version=2**63)
        ),
        "report-applied-version": signed(
            "ReportTaskOutcome",
            fed.ReportTaskOutcomeRequest(
                task_id=harness.fuzzer_task,
                outcome=fed.TASK_OUTCOME_UPLOADED,
                applied_version=2**63,
            ),
        ),
        "watch-after-sequence": signed(
            "WatchRoundEvents",
            ops.WatchRoundEventsRequest(federation_id=FEDERATION, after_sequence=2**63),
        ),
        "upload-undefined-profile": signed(
            "UploadUpdate", fed.UploadUpdateRequest(header=header), upload.key
        ),
        "echoed-input-too-large": Call(
            BY_NAME["GetPrivacyLedger"],
            (ops.GetPrivacyLedgerRequest(federation_id="x" * 20_000).SerializeToString(),),
            None,
        ),
        "call-time-overflow": Call(
            BY_NAME["CheckIn"],
            (fed.CheckInRequest(federation_id=FEDERATION).SerializeToString(),),
            tuple(metadata.items()),
        ),
    }


# What each fixed bug's minimal request gets now (each got UNKNOWN, or a client-made
# RESOURCE_EXHAUSTED for the last, before its fix).
FIXED_BUGS = {
    "unparsable-request": INVALID,
    "list-rounds-before-round": OK,
    "download-want-version": NOT_FOUND,
    "report-applied-version": INVALID,
    "watch-after-sequence": INVALID,
    "upload-undefined-profile": INVALID,
    "call-time-overflow": UNAUTHENTICATED,
    "echoed-input-too-large": INVALID,
}


@pytest.mark.parametrize("bug", sorted(FIXED_BUGS))
def test_regression(harness: Harness, bug: str) -> None:
    """Each bug the fuzzer found, minimally: its documented status, and no state change."""
    call = _reproducers(harness)[bug]
    outcome = invoke(harness.grpc, call.rpc, call.requests, call.metadata)
    harness.check_invariants()
    assert documented(outcome), f"{call.rpc.path} answered {outcome.code.name}: {outcome.details}"
    assert outcome.code == FIXED_BUGS[bug], outcome


# --- 8. the honest device finishes ----------------------------------------------------------------


def test_honest_upload_completes_after_the_fuzzing(harness: Harness) -> None:
    assert harness.honest is not None
    honest = harness.honest
    harness.check_invariants()
    status = harness.status(honest.key, honest.task.task_id)
    assert status.state == fed.UPLOAD_STATE_RECEIVING
    assert status.committed_size_bytes == 2 * FRAME
    response = harness.call_ok(
        "UploadUpdate",
        honest.frames(start=status.committed_size_bytes),
        key=honest.key,
        response=fed.UploadUpdateResponse,
    )
    assert response.state == fed.UPLOAD_STATE_ACCEPTED
    harness.accepted += 1
    harness.honest_done = True
    harness.check_serving()
    # Everything accepted is what this module sent as valid, and it is all in the aggregate.
    assert harness.coordinator is not None
    active = harness.coordinator.engine.current
    assert active is not None and active.aggregate.count == harness.accepted
    print(f"\nknown bugs hit while fuzzing: {sorted(set(harness.bug_hits))}")
    for outcome, count in sorted(SEEN.items()):
        print(f"{count:6d}  {outcome}")
