"""The length-prefixed encoding and the exact bytes behind each committee signature."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.committee import (
    CommitteeError,
    contributor_set_message,
    encode,
    joint_public_key_message,
    sealing_key_message,
    tagged_sha256,
)

byte_tuples = st.lists(st.binary(max_size=12), min_size=1, max_size=4)


def test_items_have_fixed_layouts() -> None:
    assert encode(5) == bytes(7) + b"\x05"
    assert encode(2**64 - 1) == b"\xff" * 8
    assert encode(b"ab") == b"\x00\x00\x00\x02ab"
    assert encode("é") == b"\x00\x00\x00\x02\xc3\xa9"
    assert encode("é") == encode("é".encode())
    assert encode(1, b"", "x") == bytes(7) + b"\x01" + bytes(4) + b"\x00\x00\x00\x01x"


@given(first=byte_tuples, second=byte_tuples)
def test_different_byte_tuples_of_one_arity_never_share_an_encoding(
    first: list[bytes], second: list[bytes]
) -> None:
    if len(first) == len(second) and first != second:
        assert encode(*first) != encode(*second)


def test_shifting_bytes_between_fields_changes_the_encoding() -> None:
    assert encode(b"ab", b"c") != encode(b"a", b"bc")
    assert encode("fed", 1) != encode("fe", 1)


@pytest.mark.parametrize("bad", [-1, 2**64, True])
def test_values_without_an_encoding_are_rejected(bad: int) -> None:
    with pytest.raises(CommitteeError):
        encode(bad)


def test_tagged_hashes_are_separated_by_domain() -> None:
    assert tagged_sha256("a", b"x") != tagged_sha256("b", b"x")
    assert tagged_sha256("a", b"x") == hashlib.sha256(encode("hefl.v1/a", b"x")).digest()


def test_sealing_key_signature_covers_epoch_federation_and_key() -> None:
    key = bytes(range(32))
    expected = (9).to_bytes(8, "big") + b"\x00\x00\x00\x03fed" + b"\x00\x00\x00\x20" + key
    assert sealing_key_message("fed", 9, key) == expected
    assert sealing_key_message("fed", 10, key) != expected
    assert sealing_key_message("fee", 9, key) != expected


def test_joint_key_signature_binds_the_epoch_and_the_key_digest() -> None:
    joint_key = b"joint public key bytes"
    digest = hashlib.sha256(joint_key).digest()
    assert joint_public_key_message("fed", 4, joint_key) == encode(4, "fed", digest)
    assert joint_public_key_message("fed", 5, joint_key) != joint_public_key_message(
        "fed", 4, joint_key
    )


def test_contributor_set_signature_covers_the_digest_of_the_set_bytes() -> None:
    assert contributor_set_message(b"set bytes") == hashlib.sha256(b"set bytes").digest()
