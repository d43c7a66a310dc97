"""Pure parts of the coordinator suite, and its decode part at a tiny scale."""

from __future__ import annotations

import pytest

from bench.harness import RunContext
from bench.suites import coordinator


def test_rates_and_ratios_from_paired_seconds() -> None:
    coordinator_rate, raw, ratio = coordinator._rates(2_000_000, [(0.1, 0.05), (0.2, 0.1)], 1)
    assert coordinator_rate == pytest.approx([20.0, 10.0])
    assert raw == pytest.approx([40.0, 20.0])
    assert ratio == pytest.approx([0.5, 0.5])
    batch, _, _ = coordinator._rates(1_000_000, [(0.5, 0.25)], 4)
    assert batch == pytest.approx([8.0])


async def test_pair_alternates_the_order_but_not_the_result_slots() -> None:
    order: list[str] = []

    async def first() -> None:
        order.append("first")

    async def second() -> None:
        order.append("second")

    assert len(await coordinator._pair(first, second, swap=False)) == 2
    await coordinator._pair(first, second, swap=True)
    assert order == ["first", "second", "second", "first"]


def test_decode_part_runs_at_a_tiny_scale() -> None:
    scale = coordinator.Scale(parameters=20_000, devices=2, rounds=1, decode_repeats=1)
    (figure,) = coordinator._decode(scale, RunContext(log=lambda line: None))
    assert figure.key == "coordinator.decode.oneshot_b16_ms_per_1m"
    assert figure.summary.repetitions == 1 and figure.summary.median > 0
