"""Signatures, sealed boxes and Shamir sharing."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crypto import sealing, shamir
from crypto.signing import SignatureTag, SigningKey, verify, worker_id_for


def test_signature_verifies_only_for_its_tag_and_message() -> None:
    key = SigningKey.generate()
    signature = key.sign(SignatureTag.UPLOAD_STATEMENT, b"statement")

    assert verify(key.public_bytes, SignatureTag.UPLOAD_STATEMENT, b"statement", signature)
    assert not verify(key.public_bytes, SignatureTag.ROUND_DESCRIPTOR, b"statement", signature)
    assert not verify(key.public_bytes, SignatureTag.UPLOAD_STATEMENT, b"statemenT", signature)
    other = SigningKey.generate()
    assert not verify(other.public_bytes, SignatureTag.UPLOAD_STATEMENT, b"statement", signature)


def test_verify_rejects_malformed_keys_and_signatures_without_raising() -> None:
    key = SigningKey.generate()
    signature = key.sign(SignatureTag.CALL, b"m")
    assert not verify(b"short", SignatureTag.CALL, b"m", signature)
    assert not verify(key.public_bytes, SignatureTag.CALL, b"m", signature[:-1])
    assert not verify(bytes(32), SignatureTag.CALL, b"m", signature)


def test_worker_id_is_stable_and_key_bound() -> None:
    key = SigningKey.generate()
    restored = SigningKey.from_private_bytes(key.private_bytes())
    assert restored.worker_id == key.worker_id == worker_id_for(key.public_bytes)
    assert len(key.worker_id) == 32
    assert SigningKey.generate().worker_id != key.worker_id


def test_sealed_box_opens_only_with_the_key_and_context() -> None:
    recipient = sealing.SealingKey.generate()
    box = sealing.seal(recipient.public_bytes, b"share bytes", b"round 7|worker a")

    assert sealing.open_sealed(recipient, box, b"round 7|worker a") == b"share bytes"
    with pytest.raises(sealing.SealingError):
        sealing.open_sealed(recipient, box, b"round 8|worker a")
    with pytest.raises(sealing.SealingError):
        sealing.open_sealed(sealing.SealingKey.generate(), box, b"round 7|worker a")
    tampered = sealing.SealedMessage(
        box.ephemeral_public_key, box.nonce, bytes([box.ciphertext[0] ^ 1]) + box.ciphertext[1:]
    )
    with pytest.raises(sealing.SealingError):
        sealing.open_sealed(recipient, tampered, b"round 7|worker a")


def test_sealed_boxes_of_the_same_message_differ() -> None:
    recipient = sealing.SealingKey.generate()
    first = sealing.seal(recipient.public_bytes, b"x", b"")
    second = sealing.seal(recipient.public_bytes, b"x", b"")
    assert first.ciphertext != second.ciphertext
    assert first.ephemeral_public_key != second.ephemeral_public_key


@settings(max_examples=40, deadline=None)
@given(
    secret=st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=64),
    k=st.integers(1, 7),
    data=st.data(),
)
def test_any_threshold_subset_rebuilds_the_secret(
    secret: list[int], k: int, data: st.DataObject
) -> None:
    t = data.draw(st.integers(1, k))
    vector = np.array(secret, dtype=np.int64)
    shares = shamir.split(vector, shares=k, threshold=t)
    subset = data.draw(st.sets(st.sampled_from(sorted(shares)), min_size=t, max_size=k))
    rebuilt = shamir.combine({x: shares[x] for x in subset}, threshold=t)
    np.testing.assert_array_equal(rebuilt, vector)


def test_shares_add_to_shares_of_the_sum() -> None:
    secrets = [np.random.default_rng(i).integers(-50, 50, 2048) for i in range(10)]
    per_client = [shamir.split(s, shares=5, threshold=3) for s in secrets]
    summed: dict[int, shamir.ShareVector] = {x: np.zeros(2048, dtype=np.int64) for x in range(1, 6)}
    for shares in per_client:
        for x in summed:
            summed[x] = shamir.add_shares(summed[x], shares[x])
    for subset in itertools.combinations(range(1, 6), 3):
        rebuilt = shamir.combine({x: summed[x] for x in subset}, threshold=3)
        np.testing.assert_array_equal(rebuilt, np.sum(secrets, axis=0))


def test_fewer_than_threshold_shares_are_refused_and_look_uniform() -> None:
    secret = np.zeros(20000, dtype=np.int64)
    shares = shamir.split(secret, shares=5, threshold=3)
    with pytest.raises(shamir.ShamirError):
        shamir.combine({1: shares[1], 2: shares[2]}, threshold=3)
    # A single share of an all-zero secret is uniform over the field: mean near p/2.
    mean = shares[1].mean() / shamir.FIELD_MODULUS
    assert 0.48 < mean < 0.52


def test_share_wire_format_round_trips_and_rejects_bad_input() -> None:
    share = shamir.split(np.arange(-5, 5), shares=3, threshold=2)[2]
    assert np.array_equal(shamir.decode_share(shamir.encode_share(share), length=10), share)
    with pytest.raises(shamir.ShamirError):
        shamir.decode_share(b"\x00" * 39, length=10)
    with pytest.raises(shamir.ShamirError):
        shamir.decode_share(b"\xff" * 40, length=10)
