"""The server step: FedAvg with a server learning rate and heavy-ball momentum (FedAvgM)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float64]


@dataclass(frozen=True)
class ServerOptimizerConfig:
    """Server-side optimizer settings."""

    learning_rate: float = 1.0
    """Scales the averaged update; 1.0 with no momentum is plain FedAvg."""
    momentum: float = 0.0
    """Heavy-ball momentum over rounds (0.9 is the usual FedAvgM choice)."""


def server_step(
    model: Vector, velocity: Vector, mean_delta: Vector, config: ServerOptimizerConfig
) -> tuple[Vector, Vector]:
    """Applies one round's averaged client delta.

    Returns:
        The new model and the new momentum buffer.
    """
    # Two new arrays and no temporaries: at millions of parameters each copy is tens of MB.
    new_velocity = np.multiply(velocity, config.momentum)
    new_velocity += mean_delta
    new_model = np.multiply(new_velocity, config.learning_rate)
    new_model += model
    return new_model, new_velocity
