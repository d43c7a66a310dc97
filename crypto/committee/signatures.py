"""Member signatures: making them and counting the distinct valid ones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from crypto.signing import SignatureTag, SigningKey, verify
from hefl.v1 import common_pb2


def sign_as_member(
    key: SigningKey, member_index: int, tag: SignatureTag, message: bytes
) -> common_pb2.MemberSignature:
    """Signs ``message`` for ``tag`` and labels the signature with the member's index."""
    return common_pb2.MemberSignature(member_index=member_index, signature=key.sign(tag, message))


def keep_valid(
    signing_keys: Mapping[int, bytes],
    tag: SignatureTag,
    message: bytes,
    signatures: Iterable[common_pb2.MemberSignature],
) -> list[common_pb2.MemberSignature]:
    """Returns one valid signature per member, ordered by member index.

    Signatures by unknown indices, invalid signatures and repeats of one member are dropped, so
    padding a certificate with junk or with copies never adds to its weight.

    Args:
        signing_keys: Signing public key of every member, by member index.
        tag: Purpose of the signatures.
        message: The exact signed bytes.
        signatures: The signatures to check.
    """
    kept: dict[int, common_pb2.MemberSignature] = {}
    for signature in signatures:
        index = signature.member_index
        if index in kept or index not in signing_keys:
            continue
        if verify(signing_keys[index], tag, message, signature.signature):
            kept[index] = signature
    return [kept[index] for index in sorted(kept)]


def valid_signers(
    signing_keys: Mapping[int, bytes],
    tag: SignatureTag,
    message: bytes,
    signatures: Iterable[common_pb2.MemberSignature],
) -> frozenset[int]:
    """Returns the distinct member indices with a valid signature (see :func:`keep_valid`)."""
    return frozenset(s.member_index for s in keep_valid(signing_keys, tag, message, signatures))
