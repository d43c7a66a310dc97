"""Coordinator suite: upload ingest against raw gRPC, and a round's opening and decode.

Ingest: real oneshot uploads (encoded and signed by simulated devices in this process) stream
into a real coordinator process, and the very same frames into a trivial gRPC server process
whose UploadUpdate discards them; both over insecure loopback, same chunks, same channels
options. Opening: what the running coordinator spent per round from asking its committee to
the decoded mean, and the decode step alone, measured in-process.

The per-upload aggregation cost (MaskedSum.add) is in the crypto suite
(``crypto.oneshot.coordinator_ms_per_upload_per_1m``) and is not measured again here.
"""

from __future__ import annotations

import asyncio
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.harness import Measurement, RunContext, measurement, repeat_ms
from bench.suites import Suite
from bench.suites._fleet import (
    SINK_READY,
    Fleet,
    FleetSpec,
    PreparedUpload,
    Samples,
    SimulatedDevice,
    make_devices,
    metric,
    open_channels,
    start_child,
    stop_child,
)
from hefl.v1 import federation_service_pb2_grpc as fed_grpc

MILLION = 1_000_000
DECRYPTION = "hefl_coordinator_decryption_duration_seconds"


@dataclass(frozen=True)
class Scale:
    """How big a run is."""

    parameters: int
    devices: int
    rounds: int
    decode_repeats: int


FULL = Scale(parameters=MILLION, devices=8, rounds=3, decode_repeats=5)
QUICK = Scale(parameters=200_000, devices=4, rounds=1, decode_repeats=3)


@dataclass
class Ingest:
    """(coordinator, sink) seconds per stream and per concurrent batch; opening per round."""

    payload_bytes: int = 0
    wire_bytes: int = 0
    sequential: list[tuple[float, float]] = field(default_factory=list)
    concurrent: list[tuple[float, float]] = field(default_factory=list)
    open_seconds: list[float] = field(default_factory=list)


async def _seconds(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return time.perf_counter() - started


async def _pair(
    first: Callable[[], Awaitable[object]], second: Callable[[], Awaitable[object]], swap: bool
) -> tuple[float, float]:
    """Times both; ``swap`` runs the second first (alternating cancels order effects)."""
    if swap:
        b = await _seconds(second)
        return await _seconds(first), b
    a = await _seconds(first)
    return a, await _seconds(second)


async def _round(
    devices: list[SimulatedDevice],
    sinks: list[fed_grpc.FederationServiceAsyncStub],
    spool: Path,
    result: Ingest,
) -> None:
    """One round: every device gets its task and encodes (untimed); half stream one at a time,
    half all at once; each upload goes to the coordinator and, identically, to the sink."""
    never = asyncio.Event()
    tasks = await asyncio.gather(*(d.next_task(never) for d in devices))
    prepared: list[PreparedUpload] = []
    for device, task in zip(devices, tasks, strict=True):
        assert task is not None
        prepared.append(await asyncio.to_thread(device.prepare, task, spool))
    result.payload_bytes = prepared[0].payload_bytes
    result.wire_bytes = prepared[0].wire_bytes
    half = len(devices) // 2
    for i in range(half):
        device, upload = devices[i], prepared[i]
        result.sequential.append(
            await _pair(
                functools.partial(device.send, upload),
                functools.partial(device.send, upload, sinks[i]),
                swap=i % 2 == 1,
            )
        )
    rest = list(zip(devices[half:], prepared[half:], sinks[half:], strict=True))

    async def to_coordinator() -> None:
        await asyncio.gather(*(d.send(u) for d, u, _ in rest))

    async def to_sink() -> None:
        await asyncio.gather(*(d.send(u, s) for d, u, s in rest))

    result.concurrent.append(
        await _pair(to_coordinator, to_sink, swap=len(result.concurrent) % 2 == 1)
    )


async def _drive(fleet: Fleet, sink_address: str, scale: Scale, state: Path) -> Ingest:
    devices, pool = make_devices(fleet.address, scale.devices, state, scale.parameters, 64)
    sink_pool = open_channels(sink_address, scale.devices)
    sinks = [fed_grpc.FederationServiceStub(channel) for channel in sink_pool]
    result = Ingest()
    spool = state / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    try:
        await asyncio.gather(*(d.enroll() for d in devices))
        before = fleet.metrics()
        for number in range(1, scale.rounds + 1):
            await _round(devices, sinks, spool, result)
            await fleet.wait_for_rounds(number, timeout=300)
            after = fleet.metrics()
            result.open_seconds.append(_delta(before, after, f"{DECRYPTION}_sum"))
            before = after
    finally:
        for channel in (*pool, *sink_pool):
            await channel.close(grace=None)
    return result


def _delta(before: Samples, after: Samples, name: str) -> float:
    return metric(after, name) - metric(before, name)


def _ingest(scale: Scale, ctx: RunContext) -> list[Measurement]:
    root = Path(tempfile.mkdtemp(prefix="hefl-bench-coordinator-"))
    spec = FleetSpec(
        workdir=root,
        parameters=scale.parameters,
        contributors=scale.devices,
        helper_devices=0,
        other_devices=scale.devices,
        rounds=scale.rounds,
    )
    sink, line = start_child(["sink"], root / "sink.log", SINK_READY)
    try:
        with Fleet(spec) as fleet:
            state = Path(tempfile.mkdtemp(prefix="hefl-devices-", dir=_scratch()))
            result = asyncio.run(_drive(fleet, line.split()[1], scale, state))
    finally:
        stop_child(sink)
    return _ingest_figures(scale, result, ctx)


def _scratch() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def _rates(payload: int, pairs: list[tuple[float, float]], per: int) -> tuple[list[float], ...]:
    """MB/s through the coordinator and the sink, and their per-pair ratio."""
    coordinator = [payload * per / a / 1e6 for a, _ in pairs]
    raw = [payload * per / b / 1e6 for _, b in pairs]
    return coordinator, raw, [c / r for c, r in zip(coordinator, raw, strict=True)]


def _ingest_figures(scale: Scale, result: Ingest, ctx: RunContext) -> list[Measurement]:
    key = "coordinator.ingest"
    what = f"oneshot uploads of {result.payload_bytes:,} B ({scale.parameters:,} params, b=16)"
    batch = scale.devices - scale.devices // 2
    seq = _rates(result.payload_bytes, result.sequential, 1)
    con = _rates(result.payload_bytes, result.concurrent, batch)
    ctx.log(
        f"  ingest one stream {statistics.median(seq[0]):.0f} MB/s (raw gRPC "
        f"{statistics.median(seq[1]):.0f}); {batch} streams {statistics.median(con[0]):.0f} MB/s "
        f"(raw {statistics.median(con[1]):.0f})"
    )
    wire = (
        f"Payload bytes counted; each stream carries {result.wire_bytes:,} B of serialized "
        "frames (header, 256 KiB chunks, trailer with signed statement and sealed key shares)."
    )
    out = [
        measurement(
            f"{key}.raw_grpc_mb_per_s",
            seq[1],
            "MB/s",
            f"{what}: the same frames into a gRPC server that discards them, one stream at a time",
            notes=wire,
        ),
        measurement(
            f"{key}.coordinator_mb_per_s",
            seq[0],
            "MB/s",
            f"{what}: UploadUpdate into the coordinator to acceptance, one stream at a time",
            baseline=f"{key}.raw_grpc_mb_per_s",
            notes=(
                "Per chunk the coordinator checks and fsyncs it to the blob store and commits "
                "the offset in SQLite; at the trailer it re-reads the payload for SHA-256, "
                "verifies the signed statement and adds the upload to the running aggregate."
            ),
        ),
        measurement(
            f"{key}.rate_ratio",
            seq[2],
            "ratio",
            f"{what}: coordinator ingest rate over raw gRPC's, per upload (one stream)",
            notes="Each upload is sent to both servers back to back, in alternating order.",
        ),
        measurement(
            f"{key}.raw_grpc_concurrent_mb_per_s",
            con[1],
            "MB/s",
            f"{what}: {batch} streams at once into the discarding server",
        ),
        measurement(
            f"{key}.coordinator_concurrent_mb_per_s",
            con[0],
            "MB/s",
            f"{what}: {batch} streams at once into the coordinator",
            baseline=f"{key}.raw_grpc_concurrent_mb_per_s",
        ),
        measurement(
            f"{key}.concurrent_rate_ratio",
            con[2],
            "ratio",
            f"{what}: coordinator over raw gRPC, {batch} concurrent streams",
        ),
        measurement(
            "coordinator.round.open_ms",
            [s * 1e3 for s in result.open_seconds],
            "ms",
            f"oneshot, {scale.parameters:,} params, {scale.devices} contributors, 3-member "
            "committee: the running coordinator's decryption time per round "
            "(hefl_coordinator_decryption_duration_seconds)",
            notes=(
                "From asking the committee over gRPC (certify the contributor set, collect t "
                "opened key-share sums) to the decoded mean: members' work, round trips, "
                "combine_key_sum + unmask_sum and the decode below. Members run in a helper "
                "process on loopback. Not scaled: much of it (round trips, signatures, one "
                "share per contributor) does not grow with the model."
            ),
        ),
    ]
    return out


# --------------------------------------------------------------------------- decode


def _decode(scale: Scale, ctx: RunContext) -> list[Measurement]:
    from crypto.codec import CodecConfig, decode, local_noise_variance, modular_sum_scale
    from crypto.round_codec import round_rotation

    contributors, bits = 100, 16
    probe = CodecConfig(
        bits=bits,
        sum_mode="mod",
        clip_norm=1.0,
        scale=1.0,
        parameter_count=scale.parameters,
        max_summands=contributors,
    )
    sigma = 1.0 / np.sqrt(probe.padded_length)
    s16 = modular_sum_scale(bits, 1.0, probe.padded_length, contributors, local_noise_std=sigma)
    config = CodecConfig(
        bits=bits,
        sum_mode="mod",
        clip_norm=1.0,
        scale=s16,
        parameter_count=scale.parameters,
        max_summands=contributors,
        local_noise_variance=local_noise_variance(sigma, s16),
    )
    rng = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))
    sums = rng.integers(0, 1 << bits, config.field_count, dtype=np.int64)
    sums[config.contributor_field] = contributors
    sums[config.clipped_field] = 0
    seed = os.urandom(32)

    def step() -> object:
        # What the coordinator does once per round (coordinator/profiles/secure.py decode).
        return decode(sums, config, round_rotation(config, seed), contributors)

    samples, _ = repeat_ms(step, scale.decode_repeats, warmup=1)
    ctx.log(f"  decode: {statistics.median(samples):.0f} ms for {scale.parameters:,} params")
    return [
        measurement(
            "coordinator.decode.oneshot_b16_ms_per_1m",
            [s * MILLION / scale.parameters for s in samples],
            "ms",
            f"decode of a round's opened sum (rotation + centre + inverse rotate + mean), b=16 "
            f"mod, {contributors} contributors, per 1M params",
            notes=(
                f"{len(samples)} repetitions after a warm-up. Opening the sum itself is in the "
                "crypto suite: crypto.oneshot.member_ms_per_1m (one member's share opening) and "
                "crypto.oneshot.coordinator_round_ms (combine_key_sum + unmask_sum); "
                "coordinator.round.open_ms is the whole step in a running coordinator."
            ),
        )
    ]


# --------------------------------------------------------------------------- suite


def run(quick: bool, ctx: RunContext) -> list[Measurement]:
    """Ingest through a live coordinator against raw gRPC, then the decode step."""
    scale = QUICK if quick else FULL
    out: list[Measurement] = []
    if ctx.wants("ingest"):
        ctx.log(
            f"coordinator.ingest: {scale.parameters:,} params, {scale.devices} devices, "
            f"{scale.rounds} rounds"
        )
        out += _ingest(scale, ctx)
    if ctx.wants("decode"):
        ctx.log(f"coordinator.decode: {scale.parameters:,} params")
        out += _decode(scale, ctx)
    return out


NOTES = """\
**Ingest.** One coordinator process (oneshot, b=16, DP on, 3-member committee in a helper
process, insecure loopback) and one raw gRPC server process that serves the same
`hefl.v1.FederationService/UploadUpdate` method with the same message limits but discards
every frame. The bench process holds the devices: real protocol clients that enrol, check in,
verify the signed descriptor and encode with the worker's `OneshotEncoder`, then sign the
trailer (all untimed). Each upload's frames (header, 256 KiB chunks as the worker sends them,
trailer) are then streamed to the coordinator until it answers ACCEPTED, and the very same
frames to the raw server; the timed span is the UploadUpdate call alone. In each round half
the devices upload one at a time (rate per stream) and the other half all at once (aggregate
rate). Rates count payload (ciphertext) bytes; the ratio is coordinator over raw gRPC, so 1.0
would mean durability, digest, signature checks and aggregation cost nothing. Every device has
its own channel (TCP connection) to each server.

**Opening.** `coordinator.round.open_ms` is read from the coordinator's own
`hefl_coordinator_decryption_duration_seconds` after each round; the decode step is timed
in-process on random sums of 100 contributors, as the coordinator runs it.
"""

SUITE = Suite(
    name="coordinator",
    description="upload ingest rate against raw gRPC loopback, round opening and decode time",
    run=run,
    parts=("ingest", "decode"),
    notes=NOTES,
)
