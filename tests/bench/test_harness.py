"""Harness and report logic of ``python -m bench``, with a fake suite (no timing asserted)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import bench.__main__ as cli
from bench import report, suites
from bench.harness import (
    BenchmarkError,
    Measurement,
    RunContext,
    Stopwatch,
    Target,
    machine_info,
    measurement,
    repeat_ms,
    summarize,
)
from bench.suites import crypto as crypto_suite


def test_summary_is_median_min_max_and_count() -> None:
    s = summarize([5.0, 1.0, 3.0, 100.0])
    assert (s.median, s.min, s.max, s.repetitions) == (4.0, 1.0, 100.0, 4)
    assert summarize([2.0]).median == 2.0


@pytest.mark.parametrize("samples", [[], [1.0, math.nan], [math.inf]])
def test_summary_refuses_empty_or_non_finite(samples: list[float]) -> None:
    with pytest.raises(ValueError):
        summarize(samples)


def test_measurement_key_must_name_suite_subject_and_figure() -> None:
    with pytest.raises(ValueError):
        measurement("crypto.bytes", [1.0], "B", "too short")
    assert measurement("a.b.c", [1, 2], "ms", "ok").suite == "a"


def test_target_pass_miss_and_shortfall() -> None:
    at_most = Target("<=", 8.0)
    assert at_most.met_by(8.0) and not at_most.met_by(10.0)
    assert at_most.shortfall(10.0) == pytest.approx(0.25)
    assert at_most.shortfall(7.0) == 0.0
    at_least = Target(">=", 2.0)
    assert at_least.met_by(3.0) and at_least.shortfall(1.0) == pytest.approx(0.5)


def test_repeat_and_stopwatch_collect_one_sample_per_call() -> None:
    calls: list[int] = []

    def action() -> int:
        calls.append(1)
        return len(calls)

    samples, last = repeat_ms(action, 3, warmup=2)
    assert len(samples) == 3 and len(calls) == 5 and last == 5
    watch = Stopwatch()
    for _ in range(4):
        with watch.timing():
            pass
    assert len(watch.samples) == 4 and all(s >= 0 for s in watch.samples)


def _run(measurements: list[Measurement], mode: str = "full") -> report.Run:
    return report.Run(
        command="python -m bench",
        output="bench/results/latest.json",
        mode=mode,
        started="2026-01-01T00:00:00Z",
        finished="2026-01-01T00:01:00Z",
        duration_s=60.0,
        machine={"cpu_model": "test cpu", "logical_cores": 2},
        load_average_start=(0.1, 0.2, 0.3),
        load_average_end=(0.4, 0.5, 0.6),
        suites=[report.SuiteRecord("s", "a suite", 1.0, "method notes")],
        measurements=measurements,
    )


def _figures() -> list[Measurement]:
    return [
        measurement("s.base.bytes", [40.0], "B/param", "baseline"),
        measurement(
            "s.new.bytes",
            [9.0, 10.0, 11.0],
            "B/param",
            "new scheme",
            target=Target("<=", 8.0),
            baseline="s.base.bytes",
        ),
        measurement(
            "s.new.ms", [1.0], "ms", "fast", target=Target("<=", 5.0), baseline="s.gone.ms"
        ),
    ]


def test_build_computes_ratios_from_this_run_and_target_status() -> None:
    doc = report.build(_run(_figures()))
    new = doc["results"]["s.new.bytes"]
    assert (new["median"], new["min"], new["max"], new["repetitions"]) == (10.0, 9.0, 11.0, 3)
    assert new["baseline_median"] == 40.0 and new["ratio"] == pytest.approx(0.25)
    assert new["status"] == "miss" and new["miss_by"] == pytest.approx(0.25)
    assert new["target"] == {"op": "<=", "value": 8.0, "source": "DESIGN.md §12"}
    # A baseline that was not measured in this run gives no ratio rather than a stale one.
    fast = doc["results"]["s.new.ms"]
    assert fast["status"] == "pass" and fast["ratio"] is None
    assert "status" not in doc["results"]["s.base.bytes"]
    assert json.loads(json.dumps(doc)) == doc


def test_build_refuses_duplicate_keys() -> None:
    twice = [measurement("s.a.b", [1.0], "ms", "x"), measurement("s.a.b", [2.0], "ms", "y")]
    with pytest.raises(ValueError, match="duplicate"):
        report.build(_run(twice))


def test_ratio_of_zero_baseline_is_none() -> None:
    assert report.ratio(3.0, 0.0) is None and report.ratio(3.0, 4.0) == 0.75


def test_markdown_has_one_row_per_figure_misses_and_machine() -> None:
    text = report.render_markdown(report.build(_run(_figures(), mode="quick")))
    assert "Quick mode" in text
    row = next(line for line in text.splitlines() if line.startswith("| `s.new.bytes`"))
    assert "10 [9 – 11]" in row and "<= 8" in row and "0.25" in row and "**MISS** (+25.0 %)" in row
    assert "1 of 2 targeted figures meet their target" in text
    assert "`s.new.bytes`: 10 B/param against <= 8" in text and "missed by 25.0 %" in text
    assert "test cpu" in text and "0.10 / 0.20 / 0.30" in text and "method notes" in text
    assert report.fmt(123456.0) == "123,456" and report.fmt(0.00001) == "1.00e-05"


def test_parse_selection_by_suite_and_part() -> None:
    names = ["crypto", "memory"]
    assert cli.parse_selection(None, names) == {"crypto": None, "memory": None}
    assert cli.parse_selection("crypto.fast,crypto.oneshot", names) == {
        "crypto": frozenset({"fast", "oneshot"})
    }
    assert cli.parse_selection("crypto.fast,crypto", names) == {"crypto": None}
    with pytest.raises(ValueError):
        cli.parse_selection("nope", names)


def test_registry_finds_the_crypto_suite_and_refuses_unknown_names() -> None:
    assert "crypto" in suites.available()
    assert suites.available()[0] == "crypto"
    with pytest.raises(suites.SuiteNotFoundError):
        suites.load("no_such_suite")


def _fake_run(quick: bool, ctx: RunContext) -> list[Measurement]:
    size = 10 if quick else 1000
    out = [measurement("fake.plain.bytes", [4.0], "B/param", "plain")]
    if ctx.wants("secure"):
        out.append(
            measurement(
                "fake.secure.bytes",
                [3.0 + 1 / size],
                "B/param",
                "secure",
                target=Target("<=", 3.05),
                baseline="fake.plain.bytes",
            )
        )
    return out


def _broken_run(quick: bool, ctx: RunContext) -> list[Measurement]:
    raise BenchmarkError("sum is not bit-exact")


FAKE = suites.Suite("fake", "a fake suite", _fake_run, parts=("secure",), notes="fake notes")
BROKEN = suites.Suite("broken", "always fails", _broken_run)


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = {"fake": FAKE, "broken": BROKEN}
    monkeypatch.setattr(suites, "available", lambda: list(registry))
    monkeypatch.setattr(suites, "load", lambda name: registry[name])
    monkeypatch.setattr(cli, "machine_info", lambda: {"cpu_model": "fake"})


@pytest.mark.usefixtures("fake_registry")
def test_main_runs_a_fake_suite_and_writes_json_and_markdown(tmp_path: Path) -> None:
    out, md = tmp_path / "r" / "latest.json", tmp_path / "bench.md"
    status = cli.main(["--quick", "--only", "fake", "--output", str(out), "--markdown", str(md)])
    assert status == 0
    doc = json.loads(out.read_text())
    assert doc["schema"] == report.SCHEMA and doc["mode"] == "quick"
    assert set(doc["results"]) == {"fake.plain.bytes", "fake.secure.bytes"}
    secure = doc["results"]["fake.secure.bytes"]
    assert secure["ratio"] == pytest.approx(3.1 / 4.0) and secure["status"] == "miss"
    assert doc["suites"]["fake"]["error"] is None
    assert doc["command"].startswith("python -m bench --quick")
    assert "| `fake.secure.bytes` |" in md.read_text()


@pytest.mark.usefixtures("fake_registry")
def test_main_reports_a_failed_suite_and_exits_non_zero(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    assert cli.main(["--quick", "--output", str(out)]) == 1
    doc = json.loads(out.read_text())
    assert doc["suites"]["broken"]["error"] == "sum is not bit-exact"
    assert not any(key.startswith("broken.") for key in doc["results"])
    # Quick or partial runs never overwrite docs/benchmarks.md by default.
    assert "## FAILED" in out.with_suffix(".md").read_text()


@pytest.mark.usefixtures("fake_registry")
def test_main_refuses_unknown_parts(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--only", "fake.nope", "--output", str(tmp_path / "x.json")])


def test_only_a_full_run_of_every_suite_replaces_the_published_figures(tmp_path: Path) -> None:
    assert cli.output_paths(False, None, None, None) == (
        report.DEFAULT_JSON,
        report.DEFAULT_MARKDOWN,
    )
    quick = cli.output_paths(True, None, None, None)
    assert quick == (Path("bench/results/quick.json"), Path("bench/results/quick.md"))
    partial = cli.output_paths(False, "crypto", None, None)
    assert partial == (Path("bench/results/partial.json"), Path("bench/results/partial.md"))
    named = tmp_path / "mine.json"
    assert cli.output_paths(False, None, named, None) == (named, named.with_suffix(".md"))


def test_machine_info_names_cpu_cores_and_versions() -> None:
    info = machine_info()
    for key in ("cpu_model", "logical_cores", "python", "openfhe", "torch", "load_average"):
        assert key in info


TINY = crypto_suite.Scale(parameters=20_000, clients=3, repeats=1)


def test_every_crypto_part_runs_at_a_tiny_scale_and_reports_its_keys() -> None:
    ctx = RunContext(quick=True, log=lambda line: None)
    keys: list[str] = []
    for part in crypto_suite.PARTS.values():
        keys += [m.key for m in part(TINY, ctx)]
    assert all(key.startswith("crypto.") for key in keys) and len(keys) == len(set(keys))
    for profile in ("fast", "provable", "oneshot"):
        assert f"crypto.{profile}.upload_bytes_per_param" in keys
        assert f"crypto.{profile}.coordinator_ms_per_upload_per_1m" in keys
    assert "crypto.tenseal_ckks.decrypt_ms" in keys


def test_crypto_suite_fails_loudly_on_a_wrong_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    import crypto.oneshot

    real = crypto.oneshot.unmask_sum

    def off_by_one(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        result[7] ^= 1
        return result

    monkeypatch.setattr(crypto.oneshot, "unmask_sum", off_by_one)
    with pytest.raises(BenchmarkError, match="1 of 20000 unmasked sums are wrong"):
        crypto_suite.PARTS["oneshot"](TINY, RunContext(log=lambda line: None))
