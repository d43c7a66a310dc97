"""Pure parts of the worker suite and its memory probe (no coordinator is started)."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest

from bench.harness import BenchmarkError
from bench.suites import _memory_probe as probe
from bench.suites import worker
from edge_worker.metrics import TaskProgress
from examples import digits


def _task(train: float, encode: float, upload: float, outcome: str = "uploaded") -> TaskProgress:
    task = TaskProgress(outcome=outcome, sent_bytes=1234)
    task.durations.update({"train": train, "encode": encode, "upload": upload})
    return task


def test_phases_drop_the_warm_up_round_and_split_encode_into_codec_and_crypto() -> None:
    tasks = [_task(9.0, 9.0, 9.0), _task(1.0, 0.5, 0.2), _task(2.0, 0.7, 0.3)]
    phases = worker.phases_from(tasks, [8.0, 0.4, 0.6])
    assert phases.train == [1.0, 2.0]
    assert phases.codec == [0.4, 0.6]
    assert phases.crypto == pytest.approx([0.1, 0.1])
    assert phases.upload == [0.2, 0.3]
    assert phases.payload_bytes == 1234
    # A single round is kept rather than leaving nothing.
    assert worker.phases_from(tasks[:1], [8.0]).train == [9.0]


def test_phases_refuse_failed_tasks_and_missing_codec_timings() -> None:
    with pytest.raises(BenchmarkError, match="outcomes"):
        worker.phases_from([_task(1, 1, 1), _task(1, 1, 1, "failed")], [0.1, 0.1])
    with pytest.raises(BenchmarkError, match="codec timings"):
        worker.phases_from([_task(1, 1, 1)], [0.1, 0.2])


def test_phase_figures_report_ratios_against_training() -> None:
    phases = worker.Phases([0.1, 0.2], [0.2, 0.2], [0.05, 0.05], [0.01, 0.01], 99)
    figures = {m.key: m for m in worker._phase_figures(worker.CNN1M, "oneshot", phases, 3)}
    ratio = figures["worker.cnn1m_oneshot.crypto_to_train_ratio"]
    assert ratio.samples == pytest.approx((2.5, 1.25))
    assert figures["worker.cnn1m_oneshot.crypto_ms"].baseline == "worker.cnn1m_oneshot.train_ms"
    assert figures["worker.cnn1m_oneshot.encode_ms"].samples == pytest.approx((200.0, 200.0))


def test_memory_figures_carry_the_design_target_on_per_repetition_ratios() -> None:
    peaks = {"plain": [100.0, 200.0], "oneshot": [110.0, 260.0]}
    figures = {m.key: m for m in worker._memory_figures(worker.DIGITS, peaks, 3)}
    ratio = figures["worker.memory_digits.oneshot_peak_ratio"]
    assert ratio.samples == pytest.approx((1.1, 1.3))
    assert ratio.target == worker.MEMORY_TARGET and ratio.target.value == 1.2
    assert figures["worker.memory_digits.oneshot_peak_mib"].baseline == (
        "worker.memory_digits.plain_peak_mib"
    )


def test_probe_arguments_per_variant() -> None:
    material = Path("/tmp/bgv.json")
    plain = worker.probe_arguments(worker.MLP1M, "plain", 2, material)
    assert plain[2:] == [
        "bench.suites._memory_probe",
        "--model",
        "mlp",
        "--width",
        "13333",
        "--rounds",
        "2",
        "--profile",
        "none",
    ]
    nodp = worker.probe_arguments(worker.CNN1M, "oneshot_nodp", 2, material)
    assert nodp[-3:] == ["--profile", "oneshot", "--no-dp"]
    fast = worker.probe_arguments(worker.CNN1M, "fast", 2, material)
    assert fast[-2:] == ["--bgv-material", str(material)]


def test_models_have_the_documented_sizes() -> None:
    assert worker.DIGITS.parameters == digits.parameter_count() == 9_610
    assert worker.MLP1M.parameters == 999_985
    assert worker.CNN1M.parameters == 917_770
    with pytest.raises(ValueError, match="unknown model"):
        probe.build_model("rnn")


def test_recording_metrics_keep_every_task() -> None:
    metrics = cast(worker.RecordingMetrics, worker.RecordingMetrics.create())
    task = _task(1.0, 0.5, 0.1)
    metrics.record_task(task, 0.0, 1)
    assert metrics.tasks == [task]


def test_the_trainer_holds_one_shard_and_trains_any_model() -> None:
    trainer = worker.make_trainer(worker.DIGITS)
    assert trainer.get_weights().size == 9_610
    assert trainer.train().examples > 0


@pytest.mark.parametrize(("profile", "dp"), [("none", True), ("oneshot", True), ("oneshot", False)])
def test_memory_probe_runs_a_tiny_model(profile: str, dp: bool) -> None:
    result = probe.run("mlp", 8, 1, profile, dp)
    assert result["parameters"] == digits.parameter_count(8)
    assert result["vmhwm_kib"] > 0 and result["maxrss_kib"] > 0
    assert (result["payload_bytes"] > 0) is (profile != "none")
