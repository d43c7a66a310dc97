"""Shared helpers for the oneshot tests: descriptors, a committee, and a full round."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crypto import sealing
from crypto.oneshot import (
    Contribution,
    MaskedSum,
    MaskedUpload,
    MemberKey,
    OneshotParams,
    RoundBinding,
    SumMode,
    UsedRounds,
    combine_key_sum,
    mask_update,
    open_share_sum,
    params_to_proto,
    unmask_sum,
)
from hefl.v1 import common_pb2

THRESHOLD = 3


def make_descriptor(
    params: OneshotParams,
    parameter_count: int,
    *,
    round_number: int = 1,
    federation_id: str = "fed-a",
    seed: bytes | None = None,
) -> bytes:
    """A serialized oneshot RoundDescriptor (its signatures are out of scope here)."""
    return common_pb2.RoundDescriptor(
        federation_id=federation_id,
        round_number=round_number,
        seed=os.urandom(32) if seed is None else seed,
        committee_epoch=1,
        profile=common_pb2.CRYPTO_PROFILE_ONESHOT,
        codec=common_pb2.CodecParams(
            bits=params.bits,
            sum_mode=common_pb2.SumMode.ValueType(int(params.mode)),
            parameter_count=parameter_count,
            max_summands=params.max_summands,
            oneshot=params_to_proto(params),
        ),
    ).SerializeToString()


@dataclass
class Committee:
    """Five members with fresh sealing keys."""

    keys: list[sealing.SealingKey]

    @classmethod
    def generate(cls, size: int = 5) -> Committee:
        return cls([sealing.SealingKey.generate() for _ in range(size)])

    @property
    def members(self) -> list[MemberKey]:
        return [MemberKey(i + 1, key.public_bytes) for i, key in enumerate(self.keys)]


@dataclass
class Upload:
    """One client's upload as the coordinator holds it."""

    worker_id: str
    fields: npt.NDArray[np.uint64]
    masked: MaskedUpload


def client_upload(
    binding: RoundBinding,
    params: OneshotParams,
    committee: Committee,
    worker_id: str,
    fields: npt.NDArray[np.uint64],
) -> Upload:
    masked = mask_update(
        binding,
        params,
        fields,
        UsedRounds(),
        members=committee.members,
        threshold=THRESHOLD,
        worker_id=worker_id,
    )
    return Upload(worker_id, fields, masked)


def open_round(
    binding: RoundBinding,
    params: OneshotParams,
    committee: Committee,
    added: list[Upload],
    certified: list[Upload],
    *,
    members: tuple[int, ...] = (1, 2, 3),
) -> npt.NDArray[np.uint64]:
    """Coordinator adds ``added`` payloads; ``members`` open the ``certified`` key shares."""
    total = MaskedSum(params, added[0].fields.size)
    for upload in added:
        total.add(upload.masked.payload)
    openings = {}
    for index in members:
        contributions = [
            Contribution(
                u.worker_id, u.masked.payload_sha256, u.masked.sealed_shares[index - 1].sealed
            )
            for u in certified
        ]
        openings[index] = open_share_sum(
            committee.keys[index - 1],
            index,
            binding,
            contributions,
            ring_dimension=params.ring_dimension,
        )
    key_sum = combine_key_sum(
        openings, threshold=THRESHOLD, contributors=len(certified), params=params
    )
    return unmask_sum(binding, total, key_sum)


def random_fields(rng: np.random.Generator, bits: int, count: int) -> npt.NDArray[np.uint64]:
    return rng.integers(0, 1 << bits, size=count, dtype=np.uint64)


def test_descriptor_helper_round_trips_through_the_binding() -> None:
    params = OneshotParams.create(SumMode.MOD, 16, 100)
    binding = RoundBinding(make_descriptor(params, 1234, round_number=9))
    assert binding.params() == params
    assert binding.parameter_count == 1234
    assert binding.round_number == 9
    assert binding.federation_id == "fed-a"
