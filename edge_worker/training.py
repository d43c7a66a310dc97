"""The training side of a device: a small protocol and its PyTorch implementation.

hefl asks a trainer for three things: load the global weights, train locally, and evaluate.
Weights travel as one flat float32 vector over the module's parameters, in ``parameters()``
order; the coordinator never needs to know the architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class TrainResult:
    """What local training reports (counts and losses only: nothing about single examples)."""

    examples: int
    mean_loss: float


class LocalTrainer(Protocol):
    """What the worker runtime needs from a training loop."""

    def get_weights(self) -> Vector:
        """The current model parameters as one flat float32 vector."""
        ...

    def set_weights(self, values: Vector) -> None:
        """Loads a flat parameter vector into the model."""
        ...

    def train(self) -> TrainResult:
        """Runs local training from the loaded weights."""
        ...

    def evaluate(self) -> dict[str, float]:
        """Evaluates the loaded weights on local held-out data (aggregate metrics only)."""
        ...


LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]


class TorchTrainer:
    """Wraps a user's nn.Module, optimizer and data loaders as a LocalTrainer."""

    def __init__(
        self,
        *,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        train_loader: Iterable[Batch],
        eval_loader: Iterable[Batch] | None = None,
        loss_fn: LossFn | None = None,
        local_epochs: int = 1,
        train_step: Callable[[nn.Module, Batch], torch.Tensor] | None = None,
    ) -> None:
        """Uses the user's objects as they are.

        Args:
            module: The model; its parameters are what the federation trains.
            optimizer: Optimizer over ``module``'s parameters; its state is reset every round
                (each round starts from the new global model).
            train_loader: Local training batches ``(inputs, targets)``.
            eval_loader: Local held-out batches, for the aggregate metrics a device reports.
            loss_fn: Loss of ``module(inputs)`` against targets (cross-entropy by default).
            local_epochs: Passes over ``train_loader`` per round.
            train_step: Optional custom step returning the loss to backpropagate, for models
                whose forward pass is not ``module(inputs)``.
        """
        self.module = module
        self.optimizer = optimizer
        self.train_loader = train_loader
        self.eval_loader = eval_loader
        self.loss_fn: LossFn = loss_fn or nn.functional.cross_entropy
        self.local_epochs = local_epochs
        self.train_step = train_step
        self._initial_optimizer_state: dict[str, Any] = optimizer.state_dict()

    def get_weights(self) -> Vector:
        """Flat float32 parameters."""
        with torch.no_grad():
            flat = nn.utils.parameters_to_vector(self.module.parameters())
        return flat.detach().cpu().numpy().astype(np.float32)

    def set_weights(self, values: Vector) -> None:
        """Loads flat parameters and resets the optimizer's state."""
        expected = sum(p.numel() for p in self.module.parameters())
        if values.size != expected:
            raise ValueError(f"weights have {values.size} values, the module {expected}")
        with torch.no_grad():
            nn.utils.vector_to_parameters(torch.from_numpy(values.copy()), self.module.parameters())
        self.optimizer.load_state_dict(self._initial_optimizer_state)

    def train(self) -> TrainResult:
        """Runs ``local_epochs`` passes of the user's loop."""
        self.module.train()
        examples, total_loss = 0, 0.0
        for _ in range(self.local_epochs):
            for inputs, targets in self.train_loader:
                self.optimizer.zero_grad()
                if self.train_step is not None:
                    loss = self.train_step(self.module, (inputs, targets))
                else:
                    loss = self.loss_fn(self.module(inputs), targets)
                loss.backward()  # type: ignore[no-untyped-call]
                self.optimizer.step()
                examples += len(targets)
                total_loss += float(loss.detach()) * len(targets)
        return TrainResult(examples, total_loss / max(examples, 1))

    def evaluate(self) -> dict[str, float]:
        """Accuracy and loss on the local held-out data."""
        if self.eval_loader is None:
            return {}
        self.module.eval()
        correct, examples, total_loss = 0, 0, 0.0
        with torch.no_grad():
            for inputs, targets in self.eval_loader:
                outputs = self.module(inputs)
                total_loss += float(self.loss_fn(outputs, targets)) * len(targets)
                correct += int((outputs.argmax(dim=1) == targets).sum())
                examples += len(targets)
        if examples == 0:
            return {}
        return {
            "eval_accuracy": correct / examples,
            "eval_loss": total_loss / examples,
            "eval_examples": float(examples),
        }
