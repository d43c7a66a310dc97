"""Rough single-process cost of one round per profile, for benchmarks and the docs."""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from crypto import sealing
from crypto.bgv.aggregate import Aggregator
from crypto.bgv.context import HeContext
from crypto.bgv.decrypt import DecryptionPlan, Fuser, MemberPartials, partial_decrypt
from crypto.bgv.encrypt import Encryptor, ciphertext_count
from crypto.bgv.keys import Committee, MemberSecrets, combine_public_shares
from crypto.bgv.packing import pack_fields, unpack_fields
from crypto.bgv.payload import HEADER_BYTES

T = TypeVar("T")


@dataclass(frozen=True)
class RoundCosts:
    """Median costs of one round; milliseconds unless named otherwise.

    Attributes:
        profile: Profile name.
        parameters: Parameters per upload.
        ciphertexts_per_upload: Ciphertexts per upload.
        upload_bytes: Payload-v1 bytes of one upload (frame headers included).
        bytes_per_parameter: ``upload_bytes / parameters``.
        pack_ms: Positional packing of one upload.
        encrypt_ms: Encode, encrypt, compress (if any) and serialize one upload.
        coordinator_ms: Shape check, deserialize and add one upload.
        lead_ms: A member's lead partial decryption of the aggregate (with canonicalization).
        main_ms: A member's main partial decryption, plus one Lagrange partial per dropped
            member when ``dropped`` is non-zero.
        fusion_ms: Coordinator fusion of every partial (including shape checks).
        unpack_ms: Unpacking the fused slots into parameters.
        partial_bytes: Bytes of one member's own partials.
        exact: Whether the decrypted sum equals the plaintext sum.
    """

    profile: str
    parameters: int
    ciphertexts_per_upload: int
    upload_bytes: int
    bytes_per_parameter: float
    pack_ms: float
    encrypt_ms: float
    coordinator_ms: float
    lead_ms: float
    main_ms: float
    fusion_ms: float
    unpack_ms: float
    partial_bytes: int
    exact: bool


def _median_ms(action: Callable[[], T], repeats: int) -> tuple[float, T]:
    samples: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = action()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples), result


def measure_round(
    ctx: HeContext,
    *,
    parameters: int = 1_000_000,
    bits: int = 8,
    uploads: int = 4,
    committee: Committee | None = None,
    dropped: int = 0,
    repeats: int = 3,
) -> RoundCosts:
    """Runs one round in this process (every role) and times each role's step.

    Uploads are distinct random vectors; the radix is sized for the profile's
    ``max_summands`` even though only ``uploads`` of them are summed, so the payload is the
    production size. Call after start-up (warm-up done), with OMP_NUM_THREADS=1.
    """
    committee = committee or Committee(5, 3)
    profile = ctx.profile
    radix, fields = profile.radix(bits), profile.fields_per_slot(bits)
    members = {
        i: MemberSecrets.generate(ctx, committee, i, b"measure-seed-" + bytes(19))
        for i in committee.members
    }
    shares = {i: m.public_share for i, m in members.items()}
    joint = combine_public_shares(ctx, committee, members[1].crs_blob, shares)
    boxes = {i: sealing.SealingKey.generate() for i in committee.members}
    for member in members.values():
        member.accept_joint_key(shares, joint)
        recipients = {i: k.public_bytes for i, k in boxes.items() if i != member.index}
        for to, box in member.seal_shares(recipients, b"measure").items():
            members[to].receive_share(member.index, box, boxes[to], b"measure")

    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    updates = rng.integers(0, 1 << bits, size=(uploads, parameters), dtype=np.int64)
    pack_ms, slots = _median_ms(lambda: pack_fields(updates[0], radix, fields), repeats)
    encryptor = Encryptor(ctx, joint)
    encrypt_ms, first = _median_ms(lambda: list(encryptor.encrypt(slots)), repeats)
    payloads = [first] + [
        list(encryptor.encrypt(pack_fields(u, radix, fields))) for u in updates[1:]
    ]
    per_upload = ciphertext_count(ctx, -(-parameters // fields))
    upload_bytes = sum(len(c) + HEADER_BYTES for c in payloads[0])

    aggregator = Aggregator(ctx, joint, ciphertexts_per_upload=per_upload)
    lane = aggregator.lane()
    adds: list[float] = []
    for k, upload in enumerate(payloads):
        start = time.perf_counter()
        lane.add_upload(f"u{k}", upload)
        adds.append((time.perf_counter() - start) * 1e3)
    result = aggregator.finish()

    participants = committee.members[dropped:]
    plan = DecryptionPlan.make(committee, participants)
    timed: dict[int, float] = {}
    partials: dict[int, MemberPartials] = {}
    for index in participants:
        member = members[index]
        ms, message = _median_ms(
            functools.partial(partial_decrypt, member, plan, result.ciphertexts, result.digest),
            repeats,
        )
        timed[index] = ms
        partials[index] = message
    fuser = Fuser(ctx, members[1].crs_blob, result.ciphertexts)
    fusion_ms, fused = _median_ms(lambda: fuser.fuse(plan, partials), repeats)
    unpack_ms, summed = _median_ms(
        lambda: unpack_fields(fused, radix, fields, parameters),
        repeats,
    )
    main = [i for i in plan.points if i != plan.lead] or [plan.lead]
    return RoundCosts(
        profile=profile.name,
        parameters=parameters,
        ciphertexts_per_upload=per_upload,
        upload_bytes=upload_bytes,
        bytes_per_parameter=upload_bytes / parameters,
        pack_ms=pack_ms,
        encrypt_ms=encrypt_ms,
        coordinator_ms=statistics.median(adds),
        lead_ms=timed[plan.lead],
        main_ms=timed[main[0]],
        fusion_ms=fusion_ms,
        unpack_ms=unpack_ms,
        partial_bytes=sum(len(b) for b in partials[plan.lead].own),
        exact=bool(np.array_equal(summed, updates.sum(axis=0))),
    )
