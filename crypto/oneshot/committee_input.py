"""The bulk input of a member's oneshot opening task: its sealed share of every contribution.

Layout: for each contribution of the certified set, in its (worker-id) order,
``u32 little-endian length | serialized hefl.v1.SealedBox``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from hefl.v1 import common_pb2 as common

_LENGTH = struct.Struct("<I")


class CommitteeInputError(ValueError):
    """The bulk input is truncated or does not parse."""


def encode_member_input(boxes: Iterable[common.SealedBox]) -> bytes:
    """Serializes one member's boxes, in contribution order."""
    parts = []
    for box in boxes:
        data = box.SerializeToString()
        parts.append(_LENGTH.pack(len(data)) + data)
    return b"".join(parts)


def parse_member_input(data: bytes) -> list[common.SealedBox]:
    """Parses :func:`encode_member_input` output.

    Raises:
        CommitteeInputError: on truncated or unparseable input.
    """
    boxes, offset = [], 0
    while offset < len(data):
        if offset + _LENGTH.size > len(data):
            raise CommitteeInputError("truncated committee input")
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        if offset + length > len(data):
            raise CommitteeInputError("truncated sealed box in committee input")
        try:
            boxes.append(common.SealedBox.FromString(data[offset : offset + length]))
        except Exception as error:  # noqa: BLE001 - protobuf raises DecodeError subclasses
            raise CommitteeInputError(f"sealed box does not parse: {error}") from error
        offset += length
    return boxes
