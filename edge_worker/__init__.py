"""The hefl edge worker: local training, validation hooks, update codec, client.

The public surface is :func:`federate`, which wraps an existing PyTorch model, optimizer and
data loaders as a device of a federation; docs/integration.md walks through it.
"""

from edge_worker.api import FederatedWorker, federate
from edge_worker.hooks import (
    CorrectionCheck,
    UpdateCheck,
    max_correction_norm,
    max_train_loss,
    max_update_norm,
    min_examples,
    min_local_accuracy,
)
from edge_worker.model_state import save_initial_model
from edge_worker.runner import TaskReport, WorkerCounters

__all__ = [
    "CorrectionCheck",
    "FederatedWorker",
    "TaskReport",
    "UpdateCheck",
    "WorkerCounters",
    "federate",
    "max_correction_norm",
    "max_train_loss",
    "max_update_norm",
    "min_examples",
    "min_local_accuracy",
    "save_initial_model",
]
