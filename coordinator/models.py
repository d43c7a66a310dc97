"""Global model versions, the server optimizer state, and the compact correction downlink.

Two models are kept. The *server model* W (float64) and its momentum are the optimizer's state.
The *published model* D is what every device holds: version v is D_v = D_{v-1} + deq(c_v), where
c_v = quantize(W_v - D_{v-1}) is the correction sent to devices. Because the correction is taken
against D_{v-1} rather than W_{v-1}, whatever a quantized correction missed is carried into the
next one (server-side error feedback), so quantization error does not accumulate. Devices train
against D, whose digest the round descriptor names.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from coordinator.errors import NotFoundError, WrongPhaseError
from coordinator.server_optimizer import ServerOptimizerConfig, server_step
from coordinator.store import CorrectionRow, Store, VersionRow
from crypto import model_payload

_PAYLOAD_CACHE_ENTRIES = 8


@dataclass(frozen=True)
class DownloadPayload:
    """A payload ready to stream to a device."""

    kind: str
    from_version: int
    to_version: int
    data: bytes
    sha256: bytes


class ModelRegistry:
    """Publishes versions and serves them as full models or correction chains."""

    def __init__(
        self, store: Store, optimizer: ServerOptimizerConfig, correction_bits: int = 8
    ) -> None:
        """Uses the coordinator's store; call :meth:`initialize` once before the first round."""
        self._store = store
        self._optimizer = optimizer
        self._correction_bits = correction_bits
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int], DownloadPayload] = OrderedDict()

    @property
    def latest_version(self) -> int:
        """Newest published version (0 before initialisation)."""
        latest = self._store.latest_version()
        return 0 if latest is None else latest.version

    @property
    def parameter_count(self) -> int:
        """Number of parameters of the model."""
        latest = self._require_latest()
        return (latest.size - model_payload.model_size(0)) // 4

    def _require_latest(self) -> VersionRow:
        latest = self._store.latest_version()
        if latest is None:
            raise WrongPhaseError("no model has been published yet")
        return latest

    def initialize(self, initial: npt.NDArray[np.floating]) -> int:
        """Publishes version 1 from the operator's initial model (no-op if one exists)."""
        if self._store.latest_version() is not None:
            return self.latest_version
        values = np.asarray(initial, dtype=np.float32).reshape(-1)
        self._write_server_state(1, values.astype(np.float64), np.zeros(values.size))
        payload = model_payload.encode_model(1, values)
        name = "models/v1.model"
        self._store.blobs.write_atomic(name, payload)
        self._store.add_version(
            VersionRow(1, hashlib.sha256(payload).digest(), len(payload), name, 0, time.time())
        )
        return 1

    def published(self, version: int) -> npt.NDArray[np.float32]:
        """The published (device) model at ``version``."""
        row = self._store.get_version(version)
        if row is None:
            raise NotFoundError(f"model version {version} does not exist")
        return model_payload.decode_model(self._store.blobs.read(row.blob_name)).values

    def published_sha256(self, version: int) -> bytes:
        """Digest of the full-model payload at ``version``."""
        row = self._store.get_version(version)
        if row is None:
            raise NotFoundError(f"model version {version} does not exist")
        return row.sha256

    def publish(
        self,
        mean_delta: npt.NDArray[np.floating],
        round_number: int,
        round_changes: dict[str, object],
    ) -> int:
        """Takes the server step with this round's mean delta and publishes the next version.

        The new version, its correction, the optimizer state and the round's outcome are
        committed together, so a crash leaves either the old or the new version, never half.
        """
        with self._lock:
            latest = self._require_latest()
            version = latest.version + 1
            model, velocity = self._read_server_state(latest.version)
            delta = np.asarray(mean_delta, dtype=np.float64).reshape(-1)
            if delta.size != model.size:
                raise ValueError(f"delta has {delta.size} values, model {model.size}")
            model, velocity = server_step(model, velocity, delta, self._optimizer)
            del delta
            previous = self.published(latest.version)
            scale, quantized = model_payload.quantize_difference(
                np.subtract(model, previous, dtype=np.float64), self._correction_bits
            )
            # previous + scale * quantized in float32, the order devices apply it in.
            published = quantized.astype(np.float32)
            published *= np.float32(scale)
            published += previous
            payload = model_payload.encode_model(version, published)
            digest = hashlib.sha256(payload).digest()
            correction = model_payload.encode_correction(
                model_payload.Correction(
                    latest.version, version, self._correction_bits, scale, digest, quantized
                )
            )
            self._write_server_state(version, model, velocity)
            model_name, correction_name = f"models/v{version}.model", f"corrections/v{version}.corr"
            self._store.blobs.write_atomic(model_name, payload)
            self._store.blobs.write_atomic(correction_name, correction)
            self._store.add_version(
                VersionRow(version, digest, len(payload), model_name, round_number, time.time()),
                CorrectionRow(
                    version,
                    latest.version,
                    hashlib.sha256(correction).digest(),
                    len(correction),
                    correction_name,
                ),
                round_number,
                {**round_changes, "published_version": version},
            )
            return version

    def payload_for(self, have_version: int, want_version: int) -> DownloadPayload:
        """The cheaper of the correction chain and the full model from ``have`` to ``want``.

        Raises:
            NotFoundError: if ``want_version`` does not exist.
            WrongPhaseError: if the device claims a version newer than ``want``.
        """
        latest = self.latest_version
        want = latest if want_version == 0 else want_version
        target = self._store.get_version(want) if want <= latest else None
        if target is None:
            raise NotFoundError(f"model version {want} does not exist (latest is {latest})")
        if have_version > want:
            raise WrongPhaseError(f"device holds version {have_version}, newer than {want}")
        key = (have_version, want)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
        payload = self._build(have_version, target)
        with self._lock:
            self._cache[key] = payload
            while len(self._cache) > _PAYLOAD_CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return payload

    def _build(self, have_version: int, target: VersionRow) -> DownloadPayload:
        chain = (
            self._store.corrections_between(have_version, target.version)
            if 0 < have_version < target.version
            else []
        )
        if chain and model_payload.chain_size([c.size for c in chain]) < target.size:
            data = model_payload.encode_chain([self._store.blobs.read(c.blob_name) for c in chain])
            return DownloadPayload(
                "chain", have_version, target.version, data, hashlib.sha256(data).digest()
            )
        data = self._store.blobs.read(target.blob_name)
        return DownloadPayload("full", 0, target.version, data, target.sha256)

    def _write_server_state(
        self, version: int, model: npt.NDArray[np.float64], velocity: npt.NDArray[np.float64]
    ) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, model=model, velocity=velocity)
        self._store.blobs.write_atomic(f"server/v{version}.npz", buffer.getvalue())

    def _read_server_state(
        self, version: int
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        with np.load(io.BytesIO(self._store.blobs.read(f"server/v{version}.npz"))) as state:
            return state["model"].astype(np.float64), state["velocity"].astype(np.float64)
