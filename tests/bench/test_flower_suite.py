"""The Flower reference's skip paths, report checks, SecAgg+ app packaging, exported task and
numpy MLP (no flwr: CI has no .venv-flower, so no federation runs here)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
import tomli
import torch
from torch import nn

from bench.flower_task import mlp, secagg
from bench.harness import RunContext
from bench.suites import flower
from examples import digits

REPORT = {
    "flwr": "1.0",
    "clients": 10,
    "rounds": 3,
    "round_seconds": {"1": 3.0, "2": 0.2, "3": 0.4},
    "accuracy": {"0": 0.1, "1": 0.5, "2": 0.6, "3": 0.7},
    "client_exit_codes": [0] * 10,
}


def test_a_missing_venv_is_skipped_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(flower.PYTHON_ENV, str(tmp_path / "nope" / "python"))
    out = flower.run(True, RunContext(log=lambda line: None))
    assert [m.key for m in out] == ["flower.fedavg.skipped", "flower.secaggplus.skipped"]
    assert "scripts/flower-venv.sh" in out[0].notes and out[0].notes.startswith("skipped: ")


def test_a_failing_run_is_skipped_per_part_with_its_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(flower, "unavailable", lambda python: "")
    monkeypatch.setattr(tempfile, "mkdtemp", lambda prefix: str(tmp_path / prefix))
    calls: list[tuple[str, int]] = []

    def fedavg(python: Path, workdir: Path, rounds: int, timeout: float) -> flower.FlowerRun:
        calls.append(("fedavg", rounds))
        return flower.FlowerRun(REPORT)

    def secaggplus(python: Path, workdir: Path, rounds: int, timeout: float) -> flower.FlowerRun:
        calls.append(("secaggplus", rounds))
        raise OSError("no flower-superlink")

    monkeypatch.setattr(flower, "RUNNERS", {"fedavg": fedavg, "secaggplus": secaggplus})
    out = flower.run(False, RunContext(log=lambda line: None))
    assert calls == [("fedavg", 20), ("secaggplus", 20)]
    assert [m.key for m in out] == [
        "flower.fedavg.final_accuracy",
        "flower.fedavg.round_seconds",
        "flower.secaggplus.skipped",
    ]
    assert out[2].notes.startswith("skipped: OSError: no flower-superlink")
    only = flower.run(False, RunContext(parts=frozenset({"secaggplus"}), log=lambda line: None))
    assert [m.key for m in only] == ["flower.secaggplus.skipped"]
    # Quick mode runs FedAvg only: SecAgg+'s polling makes its rounds too slow for a smoke run.
    calls.clear()
    quick = flower.run(True, RunContext(log=lambda line: None))
    assert calls == [("fedavg", 4)]
    assert quick[-1].key == "flower.secaggplus.skipped"
    assert quick[-1].notes == f"skipped: {flower.QUICK_SKIP}"


def test_an_interpreter_without_flwr_is_skipped(tmp_path: Path) -> None:
    import sys

    assert "flwr does not import" in flower.unavailable(Path(sys.executable))


def test_parse_report_accepts_a_complete_run_and_explains_the_rest() -> None:
    good = flower.parse_report(0, "noise\n" + json.dumps(REPORT) + "\n", "")
    assert good.report == REPORT and good.reason == ""
    assert "exited 2" in flower.parse_report(2, "", "Traceback: boom").reason
    assert "no report" in flower.parse_report(0, "hello\n", "").reason
    short = dict(REPORT, round_seconds={"1": 1.0})
    assert "1 of 3 rounds" in flower.parse_report(0, json.dumps(short), "").reason
    crashed = dict(REPORT, client_exit_codes=[0, 1])
    assert "clients exited" in flower.parse_report(0, json.dumps(crashed), "").reason


def test_figures_compare_with_the_federation_suite() -> None:
    accuracy, seconds = flower.figures(REPORT)
    assert accuracy.samples == (0.7,)
    assert accuracy.baseline == "federation.plaintext.final_accuracy"
    assert seconds.samples == (0.2, 0.4)  # rounds after the first
    assert seconds.baseline == "federation.plaintext.round_seconds"


def test_secaggplus_reports_must_sum_every_client_every_round() -> None:
    complete = dict(REPORT, aggregated_clients={"1": 10, "2": 10, "3": 10})
    assert flower.check_secaggplus(complete).report == complete
    dropped = dict(REPORT, aggregated_clients={"1": 10, "2": 9, "3": 10})
    assert "did not sum all 10 clients" in flower.check_secaggplus(dropped).reason
    assert "no counts" in flower.check_secaggplus(REPORT).reason
    accuracy, seconds = flower.figures(complete, "secaggplus")
    assert accuracy.key == "flower.secaggplus.final_accuracy" and "SecAgg+" in accuracy.description
    assert seconds.key == "flower.secaggplus.round_seconds" and seconds.samples == (0.2, 0.4)
    assert seconds.baseline == "federation.plaintext.round_seconds"


def test_the_secaggplus_app_and_cli_config_are_what_flwr_reads(tmp_path: Path) -> None:
    app = secagg.write_app(tmp_path / secagg.APP)
    config = tomli.loads((app / "pyproject.toml").read_text())
    components = config["tool"]["flwr"]["app"]["components"]
    assert components == {
        "serverapp": f"{secagg.PACKAGE}.secagg_app:server",
        "clientapp": f"{secagg.PACKAGE}.secagg_app:client",
    }
    assert set(config["tool"]["flwr"]["app"]["config"]) == {"task", "num-server-rounds", "report"}
    package = app / secagg.PACKAGE
    assert {f.name for f in package.iterdir()} == {
        "__init__.py",
        "secagg_app.py",
        "common.py",
        "mlp.py",
    }
    assert "from . import common" in (package / "secagg_app.py").read_text()
    home = secagg.write_flwr_home(tmp_path / "home", "127.0.0.1:1234")
    connection = tomli.loads((home / "config.toml").read_text())["superlink"]
    assert connection == {
        "default": "local",
        "local": {"address": "127.0.0.1:1234", "insecure": True},
    }


def test_the_exported_task_is_the_federation_split(tmp_path: Path) -> None:
    task = np.load(flower.write_task(tmp_path / "task.npz", clients=4))
    data = digits.load(0)
    sizes = sum(len(task[f"shard{i}_y"]) for i in range(4))
    shards = digits.shard_indices(data.train_y, 4, 0)
    assert sizes == sum(len(s) - len(s[::5]) for s in shards)
    assert np.array_equal(task["initial"], digits.initial_weights(0, digits.HIDDEN))
    assert len(task["test_y"]) == len(data.test_y) and int(task["width"]) == digits.HIDDEN


def test_numpy_mlp_matches_the_torch_model() -> None:
    width = 16
    model = digits.make_model(0, width)
    flat = nn.utils.parameters_to_vector(model.parameters()).detach().numpy()
    layers = mlp.split(flat, width)
    x = np.random.default_rng(0).random((5, 64), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.allclose(mlp.logits(layers, x), expected, atol=1e-5)
    # One SGD step on one batch: the same update as torch's SGD on cross-entropy.
    y = np.array([0, 1, 2, 3, 4])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    numpy_loss = mlp.sgd_step(layers, x, y, 0.1)
    assert numpy_loss == pytest.approx(float(loss.detach()), rel=1e-5)
    after = nn.utils.parameters_to_vector(model.parameters()).detach().numpy()
    assert np.allclose(np.concatenate([a.ravel() for a in layers]), after, atol=1e-6)
    with pytest.raises(ValueError, match="needs"):
        mlp.split(flat[:-1], width)


def test_numpy_training_learns_the_digits() -> None:
    data = digits.load(0)
    layers = mlp.split(digits.initial_weights(0, 32), 32)
    before = mlp.accuracy(layers, data.test_x, data.test_y)
    rng = np.random.default_rng(0)
    mlp.train(layers, data.train_x, data.train_y, lr=0.1, epochs=2, batch=16, rng=rng)
    assert mlp.accuracy(layers, data.test_x, data.test_y) > max(before, 0.8)
