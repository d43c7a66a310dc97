"""On-device validation hooks: user thresholds that updates and corrections must meet.

An update that fails a hook is not uploaded; a correction that fails one is not applied. Each
rejection is counted and reported to the coordinator (counts only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class UpdateCheck:
    """What an update hook sees: the delta and the metrics around local training."""

    delta: Vector
    train_loss: float
    train_examples: int
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CorrectionCheck:
    """What a correction hook sees: the model before and after applying a correction."""

    before: Vector
    after: Vector
    evaluate: Callable[[Vector], dict[str, float]] | None = None


UpdateHook = Callable[[UpdateCheck], bool]
CorrectionHook = Callable[[CorrectionCheck], bool]


def max_update_norm(limit: float) -> UpdateHook:
    """Refuses an update whose L2 norm exceeds ``limit`` (a diverged or poisoned local run)."""

    def hook(check: UpdateCheck) -> bool:
        return bool(np.linalg.norm(check.delta) <= limit)

    hook.__name__ = f"max_update_norm({limit})"
    return hook


def max_train_loss(limit: float) -> UpdateHook:
    """Refuses an update whose mean training loss exceeds ``limit``."""

    def hook(check: UpdateCheck) -> bool:
        return bool(np.isfinite(check.train_loss) and check.train_loss <= limit)

    hook.__name__ = f"max_train_loss({limit})"
    return hook


def min_examples(count: int) -> UpdateHook:
    """Refuses an update trained on fewer than ``count`` local examples."""

    def hook(check: UpdateCheck) -> bool:
        return check.train_examples >= count

    hook.__name__ = f"min_examples({count})"
    return hook


def max_correction_norm(limit: float) -> CorrectionHook:
    """Refuses a correction that moves the model by more than ``limit`` (L2)."""

    def hook(check: CorrectionCheck) -> bool:
        return bool(np.linalg.norm(check.after - check.before) <= limit)

    hook.__name__ = f"max_correction_norm({limit})"
    return hook


def min_local_accuracy(threshold: float, metric: str = "eval_accuracy") -> CorrectionHook:
    """Refuses a new global model whose accuracy on local held-out data is below ``threshold``."""

    def hook(check: CorrectionCheck) -> bool:
        if check.evaluate is None:
            return True
        value = check.evaluate(check.after).get(metric)
        return value is None or value >= threshold

    hook.__name__ = f"min_local_accuracy({threshold})"
    return hook
