"""The BGV key ceremony in one process: a real CommitteeHub and EpochManager, and key holders
that are real MemberRuntime objects answering the hub's task streams (no network).
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from coordinator.committee.bgv_ceremony import BgvKeyCeremony
from coordinator.committee.epochs import CommitteeUnavailableError, Epoch, EpochManager
from coordinator.committee.hub import CommitteeHub, PendingTask
from coordinator.config import CommitteeConfig
from coordinator.store import Store
from crypto import bgv
from crypto.bgv.wire import crs_seed_for, decode_partials, encode_partials
from crypto.codec import pack_fields, unpack_slots
from crypto.committee import RefusalError, verify_joint_public_key
from crypto.committee.errors import BAD_TRANSCRIPT, CONFLICT
from crypto.signing import SigningKey
from edge_worker.config import WorkerConfig
from edge_worker.member import MemberRuntime
from hefl.v1 import committee_service_pb2 as cmt
from hefl.v1 import common_pb2 as common

FEDERATION = "fed"
SIZE = 5
COUNT = 30_000  # fast, 8-bit fields, 4 summands: 3 fields per slot, 2 ciphertexts


class TamperingHub(CommitteeHub):
    """A coordinator that hands the members a joint key other than the sum of their shares."""

    def dispatch(
        self,
        worker_id: str,
        member_index: int,
        task: cmt.CommitteeTask,
        *,
        bulk_input: bytes = b"",
        expects_output: bool = False,
    ) -> PendingTask:
        """Flips one coefficient byte of the joint key in every DistributeKeySharesTask."""
        if task.WhichOneof("kind") == "distribute_key_shares":
            joint = bytearray(task.distribute_key_shares.joint_public_key)
            joint[len(joint) // 2] ^= 1
            task.distribute_key_shares.joint_public_key = bytes(joint)
        return super().dispatch(
            worker_id, member_index, task, bulk_input=bulk_input, expects_output=expects_output
        )


@dataclass
class World:
    """A coordinator's store, hub and epochs with SIZE simulated key holders."""

    root: Path
    store: Store
    hub: CommitteeHub
    manager: EpochManager
    keys: list[SigningKey]
    runtimes: list[MemberRuntime]
    transcript: list[bytes] = field(default_factory=list)
    answered: dict[str, list[tuple[cmt.CommitteeTask, cmt.SubmitCommitteeResultRequest]]] = field(
        default_factory=dict
    )
    servers: list[asyncio.Task[None]] = field(default_factory=list)


async def _serve(world: World, runtime: MemberRuntime, worker_id: str) -> None:
    """What MemberRuntime.run does over gRPC, straight against the hub."""
    async for task in world.hub.stream(worker_id):
        world.transcript.append(task.SerializeToString())
        try:
            answer = await runtime.handlers[str(task.WhichOneof("kind"))](task)
        except RefusalError as refusal:
            answer = cmt.SubmitCommitteeResultRequest(refusal=refusal.to_proto())
        assert answer is not None
        answer.task_id = task.task_id
        world.transcript.append(answer.SerializeToString())
        world.answered.setdefault(worker_id, []).append((task, answer))
        world.hub.submit(worker_id, answer)


@pytest.fixture(scope="module")
def ctx() -> bgv.HeContext:
    return bgv.open_context(bgv.FAST)


async def _world(root: Path, ctx: bgv.HeContext, hub: CommitteeHub | None = None) -> World:
    store = Store(root / "coordinator")
    store.bind_federation(FEDERATION, "fast")
    hub = hub or CommitteeHub()
    config = CommitteeConfig(size=SIZE, task_timeout_seconds=60, wait_for_members_seconds=10)
    manager = EpochManager(
        config,
        store,
        hub,
        FEDERATION,
        common.CRYPTO_PROFILE_FAST,
        key_ceremony=BgvKeyCeremony(ctx, config),
    )
    keys = [SigningKey.generate() for _ in range(SIZE)]
    runtimes = []
    for number, key in enumerate(keys):
        store.enroll_worker(key.worker_id, key.public_bytes, f"m{number}", True, b"")
        runtimes.append(
            MemberRuntime(
                WorkerConfig(federation_id=FEDERATION, insecure=True), key, root / f"member{number}"
            )
        )
    world = World(root, store, hub, manager, keys, runtimes)
    for key, runtime in zip(keys, runtimes, strict=True):
        world.servers.append(asyncio.create_task(_serve(world, runtime, key.worker_id)))
    return world


@pytest.fixture
async def world(tmp_path: Path, ctx: bgv.HeContext) -> AsyncIterator[World]:
    built = await _world(tmp_path, ctx)
    yield built
    await _close(built)


async def _close(world: World) -> None:
    world.hub.close()
    await asyncio.gather(*world.servers, return_exceptions=True)
    world.store.close()


def _secrets(world: World, ctx: bgv.HeContext, number: int) -> bgv.MemberSecrets:
    (path,) = (world.root / f"member{number}" / "member").glob("epoch-1/bgv-*/secrets.bin")
    return bgv.MemberSecrets.load(ctx, path)


def _member_number(world: World, epoch: Epoch, index: int) -> int:
    return next(n for n, key in enumerate(world.keys) if key.worker_id == epoch.members[index])


async def test_ceremony_gives_a_signed_joint_key_that_t_members_decrypt_after_a_dropout(
    world: World, ctx: bgv.HeContext
) -> None:
    epoch = await world.manager.ensure()
    material = epoch.material

    assert material.crypto_context == ctx.serialize()
    verify_joint_public_key(
        epoch.roster, material.joint_public_key, material.joint_public_key_signatures
    )
    assert len(material.joint_public_key_signatures) == SIZE
    # Every member keeps its secrets in its own directory, readable by itself only.
    paths = list(world.root.glob("member*/member/epoch-1/bgv-*/secrets.bin"))
    assert len(paths) == SIZE
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in paths)

    # Two uploads, summed by the coordinator's aggregator, opened with member 2 missing.
    rng = np.random.default_rng(7)
    bits, max_summands = 8, 4
    fields = [rng.integers(0, 1 << bits, size=COUNT) for _ in range(2)]
    aggregator = bgv.Aggregator(
        ctx, material.joint_public_key, ciphertexts_per_upload=2, max_summands=max_summands
    )
    lane = aggregator.lane()
    for number, values in enumerate(fields):
        slots = pack_fields(
            values, bits=bits, max_summands=max_summands, plaintext_modulus=ctx.plaintext_modulus
        )
        lane.add_upload(f"w{number}", bgv.Encryptor(ctx, material.joint_public_key).encrypt(slots))
    result = aggregator.finish()
    members = {
        index: _secrets(world, ctx, _member_number(world, epoch, index)) for index in epoch.members
    }
    committee = bgv.Committee(SIZE, epoch.threshold)
    plan = bgv.DecryptionPlan.make(committee, [1, 3, 4, 5])
    fuser = bgv.Fuser(ctx, bgv.derive_crs(ctx, crs_seed_for(epoch.roster)), result.ciphertexts)
    partials = {}
    for index in plan.participants:
        made = bgv.partial_decrypt(members[index], plan, result.ciphertexts, result.digest)
        wire = encode_partials(plan, made)
        partials[index] = decode_partials(
            wire, plan, len(result.ciphertexts), len(fuser.partial_shape.reference)
        )
    opened = unpack_slots(
        fuser.fuse(plan, partials),
        num_fields=COUNT,
        bits=bits,
        max_summands=max_summands,
        plaintext_modulus=ctx.plaintext_modulus,
    )
    assert np.array_equal(opened, fields[0] + fields[1])

    # Nothing the coordinator relayed holds a secret key share.
    relayed = b"".join(world.transcript)
    assert len(relayed) > SIZE * 100_000
    for secrets in members.values():
        secret = secrets.secret_key_bytes()
        window = secret[len(secret) // 2 : len(secret) // 2 + 64]
        assert window not in relayed


async def test_a_restarted_member_answers_the_ceremony_exactly_as_before(
    world: World, ctx: bgv.HeContext
) -> None:
    await world.manager.ensure()
    key, worker_id = world.keys[0], world.keys[0].worker_id
    seen = {
        str(task.WhichOneof("kind")): (task, answer) for task, answer in world.answered[worker_id]
    }
    before = _secrets(world, ctx, 0)
    restarted = MemberRuntime(
        WorkerConfig(federation_id=FEDERATION, insecure=True), key, world.root / "member0"
    )

    for kind in ("generate_key_share", "reveal_key_share", "distribute_key_shares"):
        task, first = seen[kind]
        again = await restarted.handlers[kind](task)
        assert again is not None
        again.task_id = first.task_id
        # Same commitment, same share, and the very same sealed boxes (never fresh ones).
        assert again == first, kind
    stored = await restarted.handlers["receive_key_shares"](seen["receive_key_shares"][0])
    assert stored is not None and stored.shares_stored
    after = _secrets(world, ctx, 0)
    assert after.to_bytes() == before.to_bytes()


async def test_members_refuse_a_chosen_crs_and_a_second_joint_key(
    world: World, ctx: bgv.HeContext
) -> None:
    epoch = await world.manager.ensure()
    runtime = world.runtimes[_member_number(world, epoch, 1)]
    chosen = cmt.CommitteeTask(
        epoch=1,
        generate_key_share=cmt.GenerateKeyShareTask(
            crypto_context=ctx.serialize(), crs_seed=os.urandom(32)
        ),
    )
    with pytest.raises(RefusalError) as refused:
        await runtime.handlers["generate_key_share"](chosen)
    assert refused.value.code == BAD_TRANSCRIPT

    worker_id = epoch.members[1]
    distribute = next(
        t for t, _ in world.answered[worker_id] if t.WhichOneof("kind") == "distribute_key_shares"
    )
    other = cmt.CommitteeTask()
    other.CopyFrom(distribute)
    # Another valid-looking key: member 2's public share alone.
    other.distribute_key_shares.joint_public_key = (
        distribute.distribute_key_shares.public_key_shares[1].public_key
    )
    with pytest.raises(RefusalError) as refused:
        await runtime.handlers["distribute_key_shares"](other)
    assert refused.value.code == CONFLICT


async def test_a_joint_key_that_is_not_the_sum_of_the_shares_is_refused(
    tmp_path: Path, ctx: bgv.HeContext
) -> None:
    world = await _world(tmp_path, ctx, TamperingHub())
    try:
        with pytest.raises(CommitteeUnavailableError, match="not the sum of the revealed shares"):
            await world.manager.ensure()
        assert world.manager.current is None
        # No member signed or shared anything for the tampered key.
        assert not list(tmp_path.glob("member*/member/epoch-1/bgv-*/bundle.bin"))
    finally:
        await _close(world)
