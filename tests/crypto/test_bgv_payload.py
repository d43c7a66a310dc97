"""Payload format v1: [u32 little-endian length][ciphertext bytes] frames."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crypto.bgv import FrameParser, PayloadError, encode_payload, parse_frames, payload_digest

bodies = st.lists(st.binary(min_size=1, max_size=300), max_size=6)


@given(bodies, st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=20))
def test_any_chunking_parses_back_to_the_same_frames(frames: list[bytes], cuts: list[int]) -> None:
    payload = encode_payload(frames)
    chunks, position, i = [], 0, 0
    while position < len(payload):
        step = cuts[i % len(cuts)]
        chunks.append(payload[position : position + step])
        position += step
        i += 1
    assert list(parse_frames(chunks, max_frame_bytes=300)) == frames


def test_the_encoding_is_exactly_length_prefixed() -> None:
    payload = encode_payload([b"abc", b"\x00" * 256])
    assert payload == b"\x03\x00\x00\x00abc" + b"\x00\x01\x00\x00" + b"\x00" * 256
    assert payload_digest([b"abc", b"\x00" * 256]) == hashlib.sha256(payload).digest()


def test_broken_payloads_are_refused() -> None:
    good = encode_payload([b"x" * 10, b"y" * 10])
    with pytest.raises(PayloadError, match="truncated"):
        list(parse_frames([good[:-1]], max_frame_bytes=10))
    with pytest.raises(PayloadError, match="truncated"):
        list(parse_frames([good + b"\x01\x00"], max_frame_bytes=10))
    with pytest.raises(PayloadError, match="limit 9"):
        list(parse_frames([good], max_frame_bytes=9))
    with pytest.raises(PayloadError, match="empty frame"):
        list(parse_frames([b"\x00\x00\x00\x00"], max_frame_bytes=10))
    with pytest.raises(PayloadError, match="more than 1 frames"):
        list(parse_frames([good], max_frame_bytes=10, max_frames=1))


def test_an_oversized_header_is_refused_before_its_body_arrives() -> None:
    parser = FrameParser(max_frame_bytes=1000)
    with pytest.raises(PayloadError, match="announces 4294967295 bytes"):
        parser.feed(b"\xff\xff\xff\xff")


def test_empty_bodies_cannot_be_encoded() -> None:
    with pytest.raises(PayloadError):
        encode_payload([b""])
