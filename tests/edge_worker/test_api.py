"""The public API: a user's PyTorch model, optimizer and loaders become federation devices."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

import edge_worker
from crypto import model_payload
from edge_worker.model_state import DeviceModel
from examples import digits
from hefl.v1 import federation_service_pb2 as fed
from tests.support.cluster import FEDERATION, running_coordinator


def _device(
    tmp_path: Path, shard: int, address: str, **kwargs: object
) -> edge_worker.FederatedWorker:
    trainer = digits.make_trainer(shard, 4)
    return edge_worker.federate(
        module=trainer.module,
        optimizer=trainer.optimizer,
        train_loader=trainer.train_loader,
        eval_loader=trainer.eval_loader,
        coordinator=address,
        federation_id=FEDERATION,
        state_dir=str(tmp_path / f"device{shard}"),
        max_rounds=2,
        insecure=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _initial_model(tmp_path: Path) -> None:
    edge_worker.save_initial_model(digits.initial_weights(), tmp_path / "initial.model")


async def test_federated_devices_train_and_hold_the_global_model(tmp_path: Path) -> None:
    _initial_model(tmp_path)
    settings: dict[str, Any] = {
        "round.goal_contributors": 2,
        "round.min_contributors": 2,
        "round.collect_seconds": 30,
        "round.interval_seconds": 0.5,
    }
    async with running_coordinator(tmp_path, **settings) as coordinator:
        devices = [_device(tmp_path, shard, coordinator.grpc_address) for shard in (0, 1)]
        counters = await asyncio.wait_for(
            asyncio.gather(*(d.run_async() for d in devices)), timeout=120
        )
        assert [c.rounds_contributed for c in counters] == [2, 2]
        await asyncio.wait_for(_wait(lambda: _latest(coordinator) >= 3), timeout=60)
        for device in devices:
            module = device.runtime.trainer.module  # type: ignore[attr-defined]
            weights = nn.utils.parameters_to_vector(module.parameters()).detach().numpy()
            model = device.runtime.model
            assert model is not None and model.version == 2  # trained from it in round 2
            # The user's module holds the global model it accepted, not its local fit.
            assert np.array_equal(weights, model.values)
            published = coordinator.store.blobs.read(f"models/v{model.version}.model")
            assert np.array_equal(model_payload.decode_model(published).values, model.values)


async def test_update_hook_refusal_keeps_the_update_on_the_device(tmp_path: Path) -> None:
    _initial_model(tmp_path)
    settings: dict[str, Any] = {
        "round.goal_contributors": 1,
        "round.min_contributors": 1,
        "round.collect_seconds": 3,
        "round.interval_seconds": 0.5,
        "round.max_rounds": 2,
    }
    async with running_coordinator(tmp_path, **settings) as coordinator:
        outcomes: list[int] = []
        device = _device(
            tmp_path,
            0,
            coordinator.grpc_address,
            update_hooks=[edge_worker.max_update_norm(1e-9)],
            on_task=lambda report: outcomes.append(report.outcome),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(device.run_async(stop))
        await asyncio.wait_for(_wait(lambda: len(outcomes) >= 1), timeout=60)
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        assert outcomes[0] == fed.TASK_OUTCOME_UPDATE_REJECTED
        assert device.counters.rounds_contributed == 0
        assert device.counters.update_rejections >= 1
        assert coordinator.store.latest_round() is not None
        assert coordinator.store.latest_round().contributors == 0  # type: ignore[union-attr]
        rejected = coordinator.metrics.registry.get_sample_value(
            "hefl_worker_validation_rejections_total", {"target": "update"}
        )
        assert rejected is not None and rejected >= 1


async def test_correction_hook_refusal_keeps_the_previous_model(tmp_path: Path) -> None:
    _initial_model(tmp_path)
    settings: dict[str, Any] = {
        "round.goal_contributors": 1,
        "round.min_contributors": 1,
        "round.collect_seconds": 30,
        "round.interval_seconds": 0.5,
    }
    async with running_coordinator(tmp_path, **settings) as coordinator:
        helper = _device(tmp_path, 1, coordinator.grpc_address)
        await asyncio.wait_for(helper.run_async(), timeout=120)  # publishes versions 2 and 3
        # A device that already holds version 1 gets the chain of corrections and refuses it.
        DeviceModel(1, digits.initial_weights()).save(tmp_path / "device0" / "model.bin")
        strict = _device(
            tmp_path,
            0,
            coordinator.grpc_address,
            correction_hooks=[edge_worker.max_correction_norm(1e-9)],
        )
        stop = asyncio.Event()
        task = asyncio.create_task(strict.run_async(stop))
        await asyncio.wait_for(_wait(lambda: strict.counters.correction_rejections >= 1), 60)
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        assert strict.counters.rounds_contributed == 0
        assert strict.runtime.model is not None and strict.runtime.model.version == 1
        stored = DeviceModel.load(tmp_path / "device0" / "model.bin")
        assert stored is not None and stored.version == 1


def _latest(coordinator) -> int:  # type: ignore[no-untyped-def]
    latest = coordinator.store.latest_version()
    return 0 if latest is None else int(latest.version)


async def _wait(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.05)
