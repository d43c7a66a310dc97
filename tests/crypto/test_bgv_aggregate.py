"""The coordinator's aggregator: limits, foreign and garbled input, all-or-nothing uploads."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from crypto.bgv import (
    FAST,
    FAST_16K,
    PROVABLE,
    AggregationError,
    Aggregator,
    CiphertextRejectedError,
    Committee,
    DecryptionPlan,
    Encryptor,
    Fuser,
    HeContext,
    PayloadError,
    encode_payload,
    open_context,
    partial_decrypt,
)
from tests.crypto.test_bgv_ceremony import Ceremony, run_ceremony


@pytest.fixture(scope="module")
def ceremony() -> Ceremony:
    return run_ceremony(open_context(FAST), Committee(3, 2))


def _upload(ceremony: Ceremony, value: int, count: int = 2) -> list[bytes]:
    slots = np.full(count * ceremony.ctx.ring_dimension, value, dtype=np.int64)
    return list(Encryptor(ceremony.ctx, ceremony.joint).encrypt(slots))


def _open(ceremony: Ceremony, ciphertexts: tuple[bytes, ...]) -> npt.NDArray[np.int64]:
    plan = DecryptionPlan.make(ceremony.committee, [1, 2])
    partials = {i: partial_decrypt(ceremony.members[i], plan, ciphertexts) for i in (1, 2)}
    return Fuser(ceremony.ctx, ceremony.members[1].crs_blob, ciphertexts).fuse(plan, partials)


def _foreign_ciphertext(ctx: HeContext) -> bytes:
    other = run_ceremony(ctx, Committee(3, 2))
    (blob,) = Encryptor(ctx, other.joint).encrypt(np.ones(ctx.ring_dimension, dtype=np.int64))
    return blob


def test_refusals_leave_the_aggregate_unchanged(ceremony: Ceremony) -> None:
    aggregator = Aggregator(ceremony.ctx, ceremony.joint, ciphertexts_per_upload=2, max_summands=3)
    lane = aggregator.lane()
    good = _upload(ceremony, 5)
    lane.add_upload("a", good)

    n = ceremony.ctx.ring_dimension
    garbage = os.urandom(len(good[0]))
    high = bytearray(good[1])
    tower = aggregator.shape.towers[0]
    high[tower.offset : tower.offset + 8] = (2**64 - 1).to_bytes(8, "little")
    refusals = {
        "16k ring": [good[0], _foreign_ciphertext(open_context(FAST_16K))],
        "other scheme": [_foreign_ciphertext(open_context(PROVABLE)), good[1]],
        "garbage": [good[0], garbage],
        "coefficient above q": [good[0], bytes(high)],
        "truncated": [good[0], good[1][:-8]],
        "empty": [good[0], b""],
        "too few": [good[0]],
        "too many": [*good, good[0]],
    }
    for name, upload in refusals.items():
        with pytest.raises(CiphertextRejectedError):
            lane.add_upload(f"bad-{name}", upload)
    with pytest.raises(AggregationError, match="already added"):
        lane.add_upload("a", good)
    with pytest.raises(PayloadError):
        lane.add_payload("framing", encode_payload(good)[:-3])
    assert aggregator.count == 1

    lane.add_payload("b", encode_payload(_upload(ceremony, 7)))
    payload = encode_payload(_upload(ceremony, 11))
    lane.add_payload("c", (payload[i : i + 1000] for i in range(0, len(payload), 1000)))
    with pytest.raises(AggregationError, match="max_summands = 3"):
        lane.add_upload("d", _upload(ceremony, 13))
    result = aggregator.finish()
    assert result.contributors == ("a", "b", "c")
    out = _open(ceremony, result.ciphertexts)
    assert np.array_equal(out, np.full(2 * n, 5 + 7 + 11))
    with pytest.raises(AggregationError, match="finished"):
        lane.add_upload("e", good)


def test_a_lane_refuses_a_second_thread(ceremony: Ceremony) -> None:
    aggregator = Aggregator(ceremony.ctx, ceremony.joint, ciphertexts_per_upload=2)
    lane = aggregator.lane()
    upload = _upload(ceremony, 1)
    intruder_errors: list[BaseException] = []

    def intruder() -> None:
        try:
            lane.add_upload("intruder", upload)
        except AggregationError as error:
            intruder_errors.append(error)

    def stream() -> Iterator[bytes]:
        # While this lane is mid-upload, another thread tries to use it.
        thread = threading.Thread(target=intruder)
        thread.start()
        thread.join()
        yield from upload

    lane.add_upload("owner", stream())
    assert len(intruder_errors) == 1 and "another thread" in str(intruder_errors[0])
    assert aggregator.finish().contributors == ("owner",)


def test_lanes_in_threads_merge_into_one_sum(ceremony: Ceremony) -> None:
    aggregator = Aggregator(ceremony.ctx, ceremony.joint, ciphertexts_per_upload=2)
    uploads = {f"w{i}": _upload(ceremony, i) for i in range(1, 9)}
    names = sorted(uploads)

    def work(part: list[str]) -> None:
        lane = aggregator.lane()
        for name in part:
            lane.add_upload(name, uploads[name])

    threads = [threading.Thread(target=work, args=(names[i::3],)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result = aggregator.finish()
    assert result.count == 8
    out = _open(ceremony, result.ciphertexts)
    assert np.array_equal(out, np.full(2 * ceremony.ctx.ring_dimension, sum(range(1, 9))))


def test_aggregator_limits_are_checked(ceremony: Ceremony) -> None:
    with pytest.raises(AggregationError, match="max_summands"):
        Aggregator(ceremony.ctx, ceremony.joint, ciphertexts_per_upload=1, max_summands=101)
    empty = Aggregator(ceremony.ctx, ceremony.joint, ciphertexts_per_upload=1)
    empty.lane()
    with pytest.raises(AggregationError, match="no upload"):
        empty.finish()


def test_the_digest_covers_the_aggregate_bytes(ceremony: Ceremony) -> None:
    aggregator = Aggregator(ceremony.ctx, ceremony.joint, ciphertexts_per_upload=2)
    aggregator.lane().add_upload("x", _upload(ceremony, 3))
    result = aggregator.finish()
    framed = b"".join(len(c).to_bytes(4, "little") + c for c in result.ciphertexts)
    assert result.digest == hashlib.sha256(framed).digest()
