"""SHA-256 helpers and the exact bytes behind every committee signature.

Signed structures travel as serialized inner messages and are signed over those exact bytes
(ROUND_DESCRIPTOR, ROSTER, UPLOAD_STATEMENT). The three signatures over values that are not a
message use :func:`encode`, a length-prefixed encoding: an integer is 8 bytes big-endian
(unsigned), a byte string is its length as 4 bytes big-endian followed by the bytes, and text is
its UTF-8 bytes encoded as a byte string. For a fixed sequence of item types this is injective,
so two different tuples never produce the same signed bytes. docs/committee.md lists every case.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from crypto.committee.errors import CommitteeError

DIGEST_BYTES = 32
_MAX_U64 = 2**64 - 1
_MAX_LENGTH = 2**32 - 1

Item = int | bytes | str


def sha256(data: bytes) -> bytes:
    """Returns the SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def _encode_item(item: Item) -> bytes:
    # bool is an int subclass; letting True pass as 1 would hide a caller's mistake.
    if isinstance(item, bool):
        raise CommitteeError("booleans have no encoding; pass an int explicitly")
    if isinstance(item, int):
        if not 0 <= item <= _MAX_U64:
            raise CommitteeError(f"integer {item} is outside uint64")
        return item.to_bytes(8, "big")
    raw = item.encode("utf-8") if isinstance(item, str) else bytes(item)
    if len(raw) > _MAX_LENGTH:
        raise CommitteeError("byte string too long to encode")
    return len(raw).to_bytes(4, "big") + raw


def encode(*items: Item) -> bytes:
    """Encodes integers (uint64), byte strings and text unambiguously, in order.

    Raises:
        CommitteeError: if an integer is negative or above 2^64 - 1, or an item is a bool.
    """
    return b"".join(_encode_item(item) for item in items)


def tagged_sha256(domain: str, *items: Item) -> bytes:
    """SHA-256 of ``encode("hefl.v1/" + domain, *items)``: hashes for two uses never collide."""
    return sha256(encode("hefl.v1/" + domain, *items))


def sealing_key_message(federation_id: str, epoch: int, sealing_public_key: bytes) -> bytes:
    """The bytes a member's SEALING_KEY signature covers: ``encode(epoch, federation, key)``."""
    return encode(epoch, federation_id, sealing_public_key)


def joint_public_key_message(federation_id: str, epoch: int, joint_public_key: bytes) -> bytes:
    """The bytes a JOINT_PUBLIC_KEY signature covers.

    ``encode(epoch, federation, SHA-256(joint_public_key))``. The epoch and federation are bound
    because members keep their signing keys across epochs: a signature over the bare key digest
    would let a coordinator pair an old (possibly recovered, hence retired) joint key with a new
    roster that holds the same members.
    """
    return encode(epoch, federation_id, sha256(joint_public_key))


def contributor_set_message(contributor_set: bytes) -> bytes:
    """The bytes a CONTRIBUTOR_SET signature covers: SHA-256 of the serialized ContributorSet."""
    return sha256(contributor_set)


def sealed_shares_sha256(
    boxes: Sequence[tuple[int, bytes, bytes, bytes]],
) -> bytes:
    """The ``UploadStatement.sealed_shares_sha256`` of sealed shares, in member order.

    Each box is ``(recipient_index, ephemeral_public_key, nonce, ciphertext)``; the digest is
    ``tagged_sha256("sealed-shares", count, index_1, key_1, nonce_1, ct_1, ...)``, and empty
    bytes when there are no boxes (profiles without sealed shares).
    """
    if not boxes:
        return b""
    items: list[Item] = [len(boxes)]
    for index, ephemeral, nonce, ciphertext in boxes:
        items += [index, ephemeral, nonce, ciphertext]
    return tagged_sha256("sealed-shares", *items)


def committee_output_message(task_id: str, output: bytes) -> bytes:
    """What a COMMITTEE_OUTPUT signature covers: ``encode(task_id, SHA-256(output))``."""
    return encode(task_id, sha256(output))
