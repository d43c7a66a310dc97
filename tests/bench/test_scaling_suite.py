"""Pure parts of the scaling suite: labels, round selection and plot files."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.suites import scaling


def test_size_labels() -> None:
    assert [scaling.size_label(p) for p in (100_000, 1_000_000, 3_000_000, 10_000_000)] == [
        "100k",
        "1m",
        "3m",
        "10m",
    ]
    assert scaling.size_label(9_610) == "9610"


def test_later_rounds_drop_the_first_unless_it_is_alone() -> None:
    assert scaling.later_rounds([5.0, 1.0, 2.0]) == [1.0, 2.0]
    assert scaling.later_rounds([5.0]) == [5.0]


def test_plot_path_marks_quick_runs_and_honours_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(scaling.PLOT_DIR_ENV, raising=False)
    assert scaling.plot_path("scaling_workers", False) == (
        scaling.DEFAULT_PLOT_DIR / "scaling_workers.png"
    )
    monkeypatch.setenv(scaling.PLOT_DIR_ENV, str(tmp_path))
    assert scaling.plot_path("scaling_workers", True) == tmp_path / "scaling_workers_quick.png"


def test_write_plot_writes_a_png(tmp_path: Path) -> None:
    points = [
        scaling.Point(10, [1.0, 1.2, 0.9], 0.1, 130.0),
        scaling.Point(100, [2.0], 0.3, 150.0),
    ]
    path = scaling.write_plot(tmp_path / "sub" / "plot.png", points, "workers", "title", True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_use_the_smallest_point_as_baseline() -> None:
    points = [scaling.Point(10, [1.0], 0.1, 100.0), scaling.Point(50, [2.0], 0.2, 150.0)]
    figures = {m.key: m for m in scaling._figures("workers", points, ["10", "50"], ["a", "b"])}
    assert figures["scaling.workers_10.round_seconds"].baseline is None
    assert figures["scaling.workers_50.round_seconds"].baseline == (
        "scaling.workers_10.round_seconds"
    )
    assert figures["scaling.workers_50.coordinator_peak_mib"].samples == (150.0,)
