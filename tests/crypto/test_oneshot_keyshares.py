"""Key transport: sealed Shamir shares of s, member-side sums, and the threshold."""

from __future__ import annotations

import hashlib
import itertools
import math
import struct

import numpy as np
import numpy.typing as npt
import pytest

from crypto import sealing, shamir
from crypto.csprng import Csprng
from crypto.oneshot import (
    Contribution,
    KeyShareError,
    OneshotParams,
    RoundBinding,
    SealedShare,
    ShareContext,
    ShareOpenError,
    SumMode,
    combine_key_sum,
    decode_share_sum,
    encode_share_sum,
    open_share_sum,
    seal_secret_shares,
)
from crypto.oneshot.sampling import discrete_gaussian
from tests.crypto.test_oneshot_fixtures import THRESHOLD, Committee, make_descriptor

PARAMS = OneshotParams.create(SumMode.MOD, 16, 100)
N = PARAMS.ring_dimension


def secret() -> npt.NDArray[np.int64]:
    return discrete_gaussian(PARAMS.secret_stddev).sample(Csprng(), N)


def share_for(
    binding: RoundBinding, committee: Committee, worker: str, value: npt.NDArray[np.int64]
) -> tuple[bytes, tuple[SealedShare, ...]]:
    digest = hashlib.sha256(worker.encode()).digest()
    context = ShareContext.for_upload(binding, worker, digest)
    return digest, seal_secret_shares(
        value, members=committee.members, threshold=THRESHOLD, context=context
    )


def test_associated_data_layout_is_exact() -> None:
    context = ShareContext("fed", 7, "w1", b"D" * 32, b"P" * 32)
    expected = (
        b"hefl.v1/oneshot/key-share\x00"
        + struct.pack("<H", 3)
        + b"fed"
        + struct.pack("<Q", 7)
        + struct.pack("<H", 2)
        + b"w1"
        + b"D" * 32
        + b"P" * 32
        + struct.pack("<I", 4)
    )
    assert context.associated_data(4) == expected
    with pytest.raises(KeyShareError, match="32 bytes"):
        ShareContext("fed", 7, "w1", b"D" * 31, b"P" * 32).associated_data(1)
    with pytest.raises(KeyShareError, match="out of range"):
        context.associated_data(0)


def test_members_sum_their_shares_and_any_t_rebuild_the_key_sum() -> None:
    committee = Committee.generate()
    binding = RoundBinding(make_descriptor(PARAMS, 100))
    secrets = [secret() for _ in range(4)]
    uploads = [share_for(binding, committee, f"w{i}", s) for i, s in enumerate(secrets)]
    sums = {}
    for index in range(1, 6):
        contributions = [
            Contribution(f"w{i}", digest, shares[index - 1].sealed)
            for i, (digest, shares) in enumerate(uploads)
        ]
        summed = open_share_sum(
            committee.keys[index - 1], index, binding, contributions, ring_dimension=N
        )
        wire = encode_share_sum(summed)
        assert len(wire) == 4 * N
        sums[index] = decode_share_sum(wire, ring_dimension=N)
    expected = np.sum(secrets, axis=0)
    for subset in itertools.combinations(range(1, 6), THRESHOLD):
        chosen = {i: sums[i] for i in subset}
        key_sum = combine_key_sum(chosen, threshold=THRESHOLD, contributors=4, params=PARAMS)
        np.testing.assert_array_equal(key_sum, expected)
    # All five: the two spare shares are checked against the first three.
    np.testing.assert_array_equal(
        combine_key_sum(sums, threshold=THRESHOLD, contributors=4, params=PARAMS), expected
    )


def test_fewer_than_t_member_shares_open_nothing() -> None:
    shares = shamir.split(secret(), shares=5, threshold=THRESHOLD)
    for subset in itertools.combinations(range(1, 6), THRESHOLD - 1):
        with pytest.raises(KeyShareError, match="cannot open"):
            combine_key_sum(
                {i: shares[i] for i in subset}, threshold=THRESHOLD, contributors=1, params=PARAMS
            )


def test_t_minus_1_shares_are_uniform_whatever_the_secret() -> None:
    # For two very different secrets, the joint distribution of the shares at members 1 and
    # 2 is uniform on F_p^2: bucket each pair into 8 x 8 cells and run a chi-square test.
    cells = 8
    for value in (np.zeros(N, dtype=np.int64), np.full(N, 59, dtype=np.int64)):
        counts = np.zeros((cells, cells))
        for _ in range(20):
            shares = shamir.split(value, shares=5, threshold=THRESHOLD)
            a = shares[1] * cells // shamir.FIELD_MODULUS
            b = shares[2] * cells // shamir.FIELD_MODULUS
            np.add.at(counts, (a, b), 1)
        expected = counts.sum() / cells**2
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        dof = cells**2 - 1
        assert chi2 < dof + 12 * math.sqrt(2 * dof)


def test_inconsistent_or_garbage_member_shares_are_detected() -> None:
    value = secret()
    shares = shamir.split(value, shares=5, threshold=THRESHOLD)
    bad = dict(shares)
    bad[5] = (bad[5] + 1) % shamir.FIELD_MODULUS
    with pytest.raises(KeyShareError, match="inconsistent"):
        combine_key_sum(bad, threshold=THRESHOLD, contributors=1, params=PARAMS)
    garbage = {1: shares[1], 2: shares[2], 3: (shares[3] + 12345) % shamir.FIELD_MODULUS}
    with pytest.raises(KeyShareError, match="exceeds"):
        combine_key_sum(garbage, threshold=THRESHOLD, contributors=1, params=PARAMS)


def test_a_member_refuses_the_set_and_names_every_box_that_fails() -> None:
    committee = Committee.generate()
    binding = RoundBinding(make_descriptor(PARAMS, 100))
    good_digest, good = share_for(binding, committee, "good", secret())
    _, other = share_for(binding, committee, "other", secret())
    box = good[0].sealed
    tampered = sealing.SealedMessage(
        box.ephemeral_public_key, box.nonce, box.ciphertext[:-1] + bytes([box.ciphertext[-1] ^ 1])
    )
    contributions = [
        Contribution("good", good_digest, good[0].sealed),
        Contribution("wrong-digest", hashlib.sha256(b"x").digest(), other[0].sealed),
        Contribution("tampered", good_digest, tampered),
        Contribution("other-members-box", good_digest, good[1].sealed),
        Contribution("good", good_digest, good[0].sealed),
    ]
    with pytest.raises(ShareOpenError) as refused:
        open_share_sum(committee.keys[0], 1, binding, contributions, ring_dimension=N)
    assert [worker for worker, _ in refused.value.failed] == [
        "wrong-digest",
        "tampered",
        "other-members-box",
        "good",
    ]
    assert "duplicate" in refused.value.failed[-1][1]


def test_share_sum_codec_rejects_wrong_sizes_and_values() -> None:
    with pytest.raises(KeyShareError):
        decode_share_sum(bytes(4 * N - 4), ring_dimension=N)
    with pytest.raises(KeyShareError):
        decode_share_sum(b"\xff" * (4 * N), ring_dimension=N)


def test_member_indices_must_be_one_to_k() -> None:
    committee = Committee.generate()
    members = committee.members
    members[0] = type(members[0])(7, members[0].sealing_public_key)
    context = ShareContext("fed", 1, "w", bytes(32), bytes(32))
    with pytest.raises(KeyShareError, match="1..k"):
        seal_secret_shares(secret(), members=members, threshold=THRESHOLD, context=context)
