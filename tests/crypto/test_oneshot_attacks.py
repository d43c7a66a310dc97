"""Crypto-level regressions of the attacks in notes/oneshot-masking.md section 5.

Each test runs the attack against the real API and checks that it does not recover an update.
A1 and A2 (subset and double decryption) are stopped by the committee's contributor-set
certificate and are tested with it; A3, A3b, A4, A5 and A6 are stopped here.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import pickle
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from crypto import sealing
from crypto.csprng import Csprng
from crypto.oneshot import (
    Contribution,
    MaskedSum,
    MaskingSession,
    OneshotParams,
    RoundBinding,
    RoundReuseError,
    ShareOpenError,
    SumMode,
    UsedRounds,
    combine_key_sum,
    mask_update,
    open_share_sum,
    unmask_sum,
)
from crypto.oneshot.expand import expand_public
from crypto.oneshot.sampling import discrete_gaussian
from tests.crypto.test_oneshot_fixtures import (
    THRESHOLD,
    Committee,
    Upload,
    client_upload,
    make_descriptor,
    random_fields,
)

PARAMS = OneshotParams.create(SumMode.MOD, 16, 100)
N = PARAMS.ring_dimension
D = 4096


def open_secret_sum(
    binding: RoundBinding, committee: Committee, uploads: list[Upload]
) -> npt.NDArray[np.int64]:
    """What t members would open for ``uploads`` (policy checks are the committee's job)."""
    openings = {}
    for index in (1, 2, 3):
        contributions = [
            Contribution(
                u.worker_id, u.masked.payload_sha256, u.masked.sealed_shares[index - 1].sealed
            )
            for u in uploads
        ]
        openings[index] = open_share_sum(
            committee.keys[index - 1], index, binding, contributions, ring_dimension=N
        )
    return combine_key_sum(openings, threshold=THRESHOLD, contributors=len(uploads), params=PARAMS)


def matches(recovered: npt.NDArray[np.uint64], update: npt.NDArray[np.uint64]) -> float:
    return float(np.mean(recovered == update))


# A3: s_i reused in a later round.


def test_a3_secrets_are_fresh_per_session_and_a_leaked_one_unmasks_nothing_else() -> None:
    committee = Committee.generate()
    rng = np.random.default_rng(1)
    round1 = RoundBinding(make_descriptor(PARAMS, D, round_number=1))
    round2 = RoundBinding(make_descriptor(PARAMS, D, round_number=2))
    update2 = random_fields(rng, 16, D)
    first = client_upload(round1, PARAMS, committee, "w", random_fields(rng, 16, D))
    second = client_upload(round2, PARAMS, committee, "w", update2)
    s1 = open_secret_sum(round1, committee, [first])
    s2 = open_secret_sum(round2, committee, [second])
    assert not np.array_equal(s1, s2)
    assert np.mean(s1 == s2) < 0.2
    # The attacker holds s1 (say, leaked) and tries it on round 2's upload.
    total = MaskedSum(PARAMS, D)
    total.add(second.masked.payload)
    assert matches(unmask_sum(round2, total, s1), update2) < 0.01
    assert np.array_equal(unmask_sum(round2, total, s2), update2)


def test_a3_the_secret_cannot_be_serialized_and_is_wiped_after_sealing() -> None:
    binding = RoundBinding(make_descriptor(PARAMS, D))
    used = UsedRounds()
    session = MaskingSession(binding, PARAMS, D, used)
    for attempt in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(TypeError, match="cannot be pickled"):
            attempt(session)
    b"".join(session.iter_payload(np.zeros(D, dtype=np.uint16)))
    session.seal_key_shares(members=Committee.generate().members, threshold=3, worker_id="w")
    assert not session._secret.any()
    with pytest.raises(Exception, match="wiped"):
        session.mask_blocks(0, np.zeros(N, dtype=np.uint16))
    # The only state a worker persists for this profile is the list of used rounds.
    assert used.to_bytes() == b'{"format":"hefl.v1/oneshot/used-rounds","used":[["fed-a",1]]}'


# A3b: the same a (same round) and the same s twice.


def test_a3b_a_client_refuses_a_round_it_already_masked_for() -> None:
    binding = RoundBinding(make_descriptor(PARAMS, D, round_number=5))
    used = UsedRounds()
    MaskingSession(binding, PARAMS, D, used)
    with pytest.raises(RoundReuseError, match="round 5"):
        MaskingSession(binding, PARAMS, D, used)
    # A descriptor re-issued for the same round (new seed) is refused too, also after a restart.
    reissued = RoundBinding(make_descriptor(PARAMS, D, round_number=5))
    restored = UsedRounds.from_bytes(used.to_bytes())
    with pytest.raises(RoundReuseError):
        mask_update(
            reissued,
            PARAMS,
            np.zeros(D, dtype=np.uint16),
            restored,
            members=Committee.generate().members,
            threshold=3,
            worker_id="w",
        )
    MaskingSession(RoundBinding(make_descriptor(PARAMS, D, round_number=6)), PARAMS, D, restored)
    assert ("fed-a", 6) in restored


# A4: one colluding client submits negated copies of the others' uploads and keys.


def test_a4_a_colluder_cannot_negate_other_clients_key_shares() -> None:
    committee = Committee.generate()
    binding = RoundBinding(make_descriptor(PARAMS, D))
    rng = np.random.default_rng(4)
    honest = [
        client_upload(binding, PARAMS, committee, f"h{i}", random_fields(rng, 16, D))
        for i in range(4)
    ]
    target, others = honest[0], honest[1:]
    # The colluder's payload: minus the others' masked vectors, which cancels them in C.
    modulus = np.uint64(1 << PARAMS.rounded_modulus_bits)
    partial = MaskedSum(PARAMS, D)
    for upload in others:
        partial.add(upload.masked.payload)
    negated = (modulus - partial.total) % modulus
    layout = partial.layout
    from crypto.oneshot.wire import pack_blocks

    evil_payload = layout.header + pack_blocks(layout, 0, negated)
    evil_digest = hashlib.sha256(evil_payload).digest()

    # Its key material would have to be minus the others' secrets. It can relay their boxes
    # under its own name, or flip bits in them; neither opens.
    for index in (1, 2, 3):
        stolen = others[0].masked.sealed_shares[index - 1].sealed
        flipped = sealing.SealedMessage(
            stolen.ephemeral_public_key,
            stolen.nonce,
            bytes(b ^ 0xFF for b in stolen.ciphertext[:16]) + stolen.ciphertext[16:],
        )
        for box in (stolen, flipped):
            contributions = [
                Contribution(
                    u.worker_id, u.masked.payload_sha256, u.masked.sealed_shares[index - 1].sealed
                )
                for u in honest
            ] + [Contribution("colluder", evil_digest, box)]
            with pytest.raises(ShareOpenError) as refused:
                open_share_sum(
                    committee.keys[index - 1], index, binding, contributions, ring_dimension=N
                )
            assert [w for w, _ in refused.value.failed] == ["colluder"]

    # With honest (fresh) key shares of its own, the negated masks do not cancel: the opened
    # "aggregate" of {target, others, colluder} is unrelated to the target's update.
    colluder = client_upload(binding, PARAMS, committee, "colluder", np.zeros(D, dtype=np.uint64))
    total = MaskedSum(PARAMS, D)
    for payload in [u.masked.payload for u in honest] + [evil_payload]:
        total.add(payload)
    key_sum = open_secret_sum(binding, committee, [*honest, colluder])
    recovered = unmask_sum(binding, total, key_sum)
    assert matches(recovered, target.fields) < 0.01


# A5: the server hands out its own a (for example zero).


def test_a5_there_is_no_way_to_pass_a_polynomial_or_a_seed() -> None:
    checked: list[tuple[Callable[..., object], list[str]]] = [
        (RoundBinding.__init__, ["self", "descriptor"]),
        (MaskingSession.__init__, ["self", "binding", "params", "parameter_count", "used_rounds"]),
        (
            mask_update,
            ["binding", "params", "fields", "used_rounds", "members", "threshold", "worker_id"],
        ),
        (expand_public, ["binding", "params", "first_block", "count"]),
        (unmask_sum, ["binding", "masked_sum", "key_sum", "batch_blocks"]),
    ]
    for function, allowed in checked:
        assert list(inspect.signature(function).parameters) == allowed
    binding = RoundBinding(make_descriptor(PARAMS, D))
    with pytest.raises(AttributeError):
        binding.descriptor_sha256 = bytes(32)  # type: ignore[misc]


def test_a5_masks_come_from_the_signed_seed_and_hide_the_update() -> None:
    one = RoundBinding(make_descriptor(PARAMS, D, seed=bytes(32)))
    other = RoundBinding(make_descriptor(PARAMS, D, seed=b"\x01" + bytes(31)))
    a_one = expand_public(one, PARAMS, 0, 2)
    a_other = expand_public(other, PARAMS, 0, 2)
    np.testing.assert_array_equal(a_one, expand_public(one, PARAMS, 0, 2))
    assert np.mean(a_one == a_other) < 1e-3
    # Uniform mod 2^32: about half the coefficients have the top bit set, none is forced to 0.
    assert 0.45 < np.mean(a_one >> np.uint64(31)) < 0.55
    assert np.count_nonzero(a_one == 0) < 3
    # With a = 0 the update would be c >> d; with the client's own a it is noise.
    update = random_fields(np.random.default_rng(5), 16, D)
    upload = client_upload(one, PARAMS, Committee.generate(), "w", update)
    total = MaskedSum(PARAMS, D)
    total.add(upload.masked.payload)
    naive = (
        (total.total + np.uint64(1 << (PARAMS.shift_bits - 1))) >> np.uint64(PARAMS.shift_bits)
    ) & np.uint64(0xFFFF)
    assert matches(naive, update) < 0.01


# A6: leakage of S = s_1 + s_2 when only two clients are honest.


def posterior_stats(
    pmf: dict[int, float], s1: npt.NDArray[np.int64], s2: npt.NDArray[np.int64]
) -> tuple[float, float, float]:
    """Fraction of pinned coefficients, largest posterior, mean conditional entropy (bits)."""
    support = np.array(sorted(pmf))
    probabilities = np.array([pmf[x] for x in support])
    pinned, largest, entropy = 0, 0.0, 0.0
    total = s1 + s2
    for value in np.unique(total):
        joint = probabilities * np.array([pmf.get(int(value - x), 0.0) for x in support])
        posterior = joint / joint.sum()
        count = int(np.count_nonzero(total == value))
        pinned += count * int(posterior.max() == 1.0)
        largest = max(largest, float(posterior.max()))
        nonzero = posterior[posterior > 0]
        entropy += count * float(-(nonzero * np.log2(nonzero)).sum())
    return pinned / total.size, largest, entropy / total.size


def test_a6_ternary_secrets_leak_through_the_key_sum_and_gaussian_ones_do_not() -> None:
    rng = Csprng()
    count = 20 * N
    ternary = {-1: 1 / 3, 0: 1 / 3, 1: 1 / 3}
    t1 = (rng.uint64(count) % np.uint64(3)).astype(np.int64) - 1
    t2 = (rng.uint64(count) % np.uint64(3)).astype(np.int64) - 1
    pinned, largest, entropy = posterior_stats(ternary, t1, t2)
    assert pinned == pytest.approx(2 / 9, abs=0.01)
    assert largest == 1.0
    assert entropy == pytest.approx(0.97, abs=0.02)

    sampler = discrete_gaussian(PARAMS.secret_stddev)
    tail = sampler.tail_bound
    gaussian = {x - tail: p for x, p in enumerate(sampler.probabilities())}
    g1, g2 = sampler.sample(rng, count), sampler.sample(rng, count)
    pinned, largest, entropy = posterior_stats(gaussian, g1, g2)
    # The posterior of s_1 given S is a Gaussian of width 4.5 / sqrt(2): never a point mass.
    assert pinned == 0.0
    assert largest < 0.2
    assert entropy > 3.5
