"""The global model the device holds: version and values, persisted, updated only in order."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from crypto import model_payload
from crypto.durable import write_durable
from hefl.v1 import federation_service_pb2 as fed

Vector = npt.NDArray[np.float32]
CorrectionCheck = Callable[[Vector, Vector], bool]
"""A validation hook: (current model, model after the correction) -> accept?"""


class CorrectionRejected(Exception):  # noqa: N818 - a domain outcome, not an error condition
    """A validation hook refused a correction; the device keeps its current model."""


@dataclass
class DeviceModel:
    """The device's copy of the published global model."""

    version: int
    values: Vector

    @classmethod
    def load(cls, path: Path) -> DeviceModel | None:
        """Reads the persisted model, or None on first start."""
        if not path.exists():
            return None
        payload = model_payload.decode_model(path.read_bytes())
        return cls(payload.version, payload.values)

    def save(self, path: Path) -> None:
        """Persists the model atomically."""
        write_durable(path, model_payload.encode_model(self.version, self.values))

    @property
    def sha256(self) -> bytes:
        """Digest of the full-model payload, as round descriptors name it."""
        return model_payload.model_sha256(self.version, self.values)


def apply_download(
    current: DeviceModel | None,
    header: fed.ModelHeader,
    data: bytes,
    check: CorrectionCheck | None = None,
) -> DeviceModel:
    """Applies a downloaded full model or correction chain to the device's model.

    Every correction must start at the version the device holds (so none is applied out of
    order) and must reproduce the digest the coordinator published. ``check`` is the user's
    validation hook; a correction it refuses is not applied.

    Raises:
        model_payload.PayloadError: malformed payload, wrong base version or digest.
        CorrectionRejected: the hook refused a correction.
    """
    if header.kind == fed.MODEL_PAYLOAD_KIND_FULL:
        payload = model_payload.decode_model(data)
        if payload.version != header.to_version:
            raise model_payload.PayloadError("full model version differs from its header")
        if current is not None and check is not None and not check(current.values, payload.values):
            raise CorrectionRejected(f"validation hook refused model version {payload.version}")
        return DeviceModel(payload.version, payload.values)
    if header.kind != fed.MODEL_PAYLOAD_KIND_CORRECTION_CHAIN or current is None:
        raise model_payload.PayloadError("a correction chain needs a model to apply to")
    model = current
    for correction in model_payload.decode_chain(data):
        updated = model_payload.apply_correction(model.version, model.values, correction)
        if check is not None and not check(model.values, updated):
            raise CorrectionRejected(
                f"validation hook refused correction {correction.from_version}->"
                f"{correction.to_version}"
            )
        model = DeviceModel(correction.to_version, updated)
    if model.version != header.to_version:
        raise model_payload.PayloadError("correction chain does not reach its header's version")
    return model


def save_initial_model(values: npt.NDArray[np.floating], path: Path) -> None:
    """Writes the payload a coordinator starts from (``federation.initial_model``).

    Example::

        from edge_worker import save_initial_model
        save_initial_model(parameters_to_vector(model.parameters()).detach().numpy(), path)
    """
    DeviceModel(1, np.asarray(values, dtype=np.float32).reshape(-1)).save(path)
