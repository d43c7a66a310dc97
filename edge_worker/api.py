"""The public surface for an existing PyTorch project: hand over the model, optimizer and data.

Example::

    import edge_worker
    from edge_worker.hooks import max_update_norm, min_local_accuracy

    worker = edge_worker.federate(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        train_loader=train_loader,
        eval_loader=eval_loader,
        coordinator="127.0.0.1:50051",
        federation_id="default",
        state_dir="var/device-7",
        update_hooks=[max_update_norm(5.0)],
        correction_hooks=[min_local_accuracy(0.5)],
    )
    worker.run()  # blocks; checks in, trains when selected, uploads privately, applies corrections

hefl takes care of check-in and retry windows, downloading and validating corrections, local
training with the user's loop, clipping, quantization, DP noise, encryption and resumable upload.
The model's parameters are set to the latest global model the device accepted.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from edge_worker.config import WorkerConfig
from edge_worker.hooks import CorrectionHook, UpdateHook
from edge_worker.runner import TaskReport, WorkerCounters, WorkerRuntime
from edge_worker.training import Batch, LossFn, TorchTrainer


@dataclass
class FederatedWorker:
    """A device wired to a federation; created by :func:`federate`."""

    runtime: WorkerRuntime

    @property
    def worker_id(self) -> str:
        """This device's worker id (derived from its key in ``state_dir``)."""
        return self.runtime.worker_id

    @property
    def counters(self) -> WorkerCounters:
        """Contributions and validation rejections so far."""
        return self.runtime.counters

    async def run_async(self, stop: asyncio.Event | None = None) -> WorkerCounters:
        """Works rounds until ``stop`` is set or ``max_rounds`` contributions are made."""
        return await self.runtime.run(stop)

    def run(self) -> WorkerCounters:
        """Blocking :meth:`run_async` that stops cleanly on SIGINT/SIGTERM."""

        async def main() -> WorkerCounters:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            return await self.runtime.run(stop)

        return asyncio.run(main())


def federate(
    *,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: Iterable[Batch],
    eval_loader: Iterable[Batch] | None = None,
    loss_fn: LossFn | None = None,
    train_step: Callable[[nn.Module, Batch], torch.Tensor] | None = None,
    local_epochs: int = 1,
    update_hooks: Sequence[UpdateHook] = (),
    correction_hooks: Sequence[CorrectionHook] = (),
    coordinator: str = "127.0.0.1:50051",
    federation_id: str = "default",
    state_dir: str = "var/worker",
    key_holder: bool = False,
    enrollment_token: str = "",
    display_name: str = "",
    max_rounds: int = 0,
    on_task: Callable[[TaskReport], None] | None = None,
    insecure: bool = False,
) -> FederatedWorker:
    """Wraps a PyTorch training setup as a hefl device.

    Args:
        module: The model; its parameters are what the federation trains.
        optimizer: Optimizer over ``module.parameters()`` (its state restarts every round).
        train_loader: Local training batches ``(inputs, targets)``; the data never leaves.
        eval_loader: Local held-out batches; aggregate accuracy/loss are reported.
        loss_fn: Loss of ``module(inputs)`` against targets (cross-entropy by default).
        train_step: A custom step returning the loss, for models not called as ``module(x)``.
        local_epochs: Passes over ``train_loader`` per round.
        update_hooks: Checks an update must pass before upload (see edge_worker.hooks).
        correction_hooks: Checks a new global model must pass before it is applied.
        coordinator: gRPC address of the coordinator.
        federation_id: Federation to join.
        state_dir: Where the device keeps its key, model, ledger and spool.
        key_holder: Also serve on the key committee.
        enrollment_token: Enrolment secret from the operator.
        display_name: Name shown to operators.
        max_rounds: Stop after this many contributions (0: run until stopped).
        on_task: Called after every task with its outcome.
        insecure: Connect without TLS (loopback demos and tests only). By default the device
            uses the certificate the enrolment authority put in ``state_dir``
            (``python -m crypto.certs worker``).

    Returns:
        The device; call :meth:`FederatedWorker.run`.
    """
    trainer = TorchTrainer(
        module=module,
        optimizer=optimizer,
        train_loader=train_loader,
        eval_loader=eval_loader,
        loss_fn=loss_fn,
        local_epochs=local_epochs,
        train_step=train_step,
    )
    config = WorkerConfig(
        coordinator=coordinator,
        federation_id=federation_id,
        state_dir=state_dir,
        key_holder=key_holder,
        enrollment_token=enrollment_token,
        display_name=display_name,
        max_rounds=max_rounds,
        serve_committee_after_rounds=key_holder,
        insecure=insecure,
    )
    runtime = WorkerRuntime(
        config,
        trainer,
        update_hooks=update_hooks,
        correction_hooks=correction_hooks,
        on_task=on_task,
    )
    if runtime.model is not None:
        trainer.set_weights(runtime.model.values)
    return FederatedWorker(runtime)
