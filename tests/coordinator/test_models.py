"""Model versions, the server step, and the compact correction downlink with error feedback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from coordinator.errors import NotFoundError, WrongPhaseError
from coordinator.models import ModelRegistry
from coordinator.server_optimizer import ServerOptimizerConfig
from coordinator.store import Store
from crypto import model_payload
from edge_worker.model_state import DeviceModel, apply_download
from hefl.v1 import federation_service_pb2 as fed


def _registry(tmp_path: Path, momentum: float = 0.0) -> tuple[Store, ModelRegistry]:
    store = Store(tmp_path / "state")
    return store, ModelRegistry(store, ServerOptimizerConfig(1.0, momentum), correction_bits=8)


def _header(payload) -> fed.ModelHeader:  # type: ignore[no-untyped-def]
    kind = {"full": fed.MODEL_PAYLOAD_KIND_FULL, "chain": fed.MODEL_PAYLOAD_KIND_CORRECTION_CHAIN}
    return fed.ModelHeader(
        kind=kind[payload.kind],
        from_version=payload.from_version,
        to_version=payload.to_version,
        payload_sha256=payload.sha256,
    )


def test_error_feedback_keeps_devices_close_to_the_server_model(tmp_path: Path) -> None:
    store, registry = _registry(tmp_path)
    rng = np.random.default_rng(0)
    initial = rng.normal(0, 1, 5000).astype(np.float32)
    registry.initialize(initial)
    server_model = initial.astype(np.float64)
    deltas = [rng.normal(0, 0.01, 5000) for _ in range(30)]
    for round_number, delta in enumerate(deltas, start=1):
        registry.publish(delta, round_number, {})
        server_model += delta
    published = registry.published(31).astype(np.float64)
    # With error feedback the gap stays at one correction's quantization error, not 30 of them.
    step = np.max(np.abs(deltas[-1])) / 127
    assert np.max(np.abs(published - server_model)) <= 1.5 * step
    store.close()


def test_device_catches_up_by_chain_or_full_model_whichever_is_smaller(tmp_path: Path) -> None:
    store, registry = _registry(tmp_path)
    registry.initialize(np.zeros(10_000, dtype=np.float32))
    for round_number in range(1, 7):
        registry.publish(np.full(10_000, 0.01 * round_number), round_number, {})
    # Two versions behind: two 1-byte corrections beat a 4-byte model.
    near = registry.payload_for(5, 7)
    assert near.kind == "chain" and near.from_version == 5
    # Six versions behind: the full model is smaller than six corrections.
    far = registry.payload_for(1, 7)
    assert far.kind == "full"
    device = DeviceModel(5, registry.published(5))
    caught_up = apply_download(device, _header(near), near.data)
    assert caught_up.version == 7
    assert np.array_equal(caught_up.values, registry.published(7))
    fresh = apply_download(None, _header(far), far.data)
    assert np.array_equal(fresh.values, caught_up.values)
    store.close()


def test_corrections_never_apply_out_of_order_or_to_the_wrong_base(tmp_path: Path) -> None:
    store, registry = _registry(tmp_path)
    registry.initialize(np.zeros(1000, dtype=np.float32))
    registry.publish(np.full(1000, 0.5), 1, {})
    registry.publish(np.full(1000, 0.25), 2, {})
    chain = registry.payload_for(2, 3)
    assert chain.kind == "chain"
    with pytest.raises(model_payload.PayloadError, match="does not apply to version 1"):
        apply_download(DeviceModel(1, registry.published(1)), _header(chain), chain.data)
    tampered = DeviceModel(2, registry.published(2) + np.float32(0.001))
    with pytest.raises(model_payload.PayloadError, match="digest"):
        apply_download(tampered, _header(chain), chain.data)
    store.close()


def test_unknown_or_future_versions_are_refused(tmp_path: Path) -> None:
    store, registry = _registry(tmp_path)
    registry.initialize(np.zeros(10, dtype=np.float32))
    with pytest.raises(NotFoundError):
        registry.payload_for(0, 9)
    registry.publish(np.ones(10), 1, {})
    with pytest.raises(WrongPhaseError):
        registry.payload_for(2, 1)
    store.close()


def test_momentum_state_survives_a_restart(tmp_path: Path) -> None:
    store, registry = _registry(tmp_path, momentum=0.9)
    registry.initialize(np.zeros(4, dtype=np.float32))
    registry.publish(np.ones(4), 1, {})
    store.close()
    store, registry = _registry(tmp_path, momentum=0.9)
    registry.publish(np.ones(4), 2, {})
    # velocity: 1, then 0.9 * 1 + 1 = 1.9; model: 1 + 1.9 = 2.9
    assert np.allclose(registry.published(3), 2.9, atol=0.02)
    store.close()
