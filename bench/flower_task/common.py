"""What run.py (legacy Flower) and secagg_app.py (Flower App with SecAgg+) share: the local
training recipe, a device's data and the FedAvg strategy that times rounds and scores the model.

Relative imports only: secagg.py copies this file beside secagg_app.py and mlp.py into the
package of a Flower App.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from . import mlp

LEARNING_RATE = 0.1
LOCAL_EPOCHS = 2
BATCH = 16


def device_data(task: Any, shard: int) -> tuple[mlp.Array, Any]:
    """One device's training rows and labels from the task file."""
    return task[f"shard{shard}_x"].astype(np.float32), task[f"shard{shard}_y"].astype(np.int64)


def device_seed(task: Any, shard: int) -> int:
    """The seed of a device's shuffles."""
    return 1000 * int(task["seed"]) + shard


def train_round(layers: mlp.Layers, x: mlp.Array, y: Any, rng: np.random.Generator) -> None:
    """One round of local training, as examples/digits.py's devices do it (in place)."""
    mlp.train(layers, x, y, lr=LEARNING_RATE, epochs=LOCAL_EPOCHS, batch=BATCH, rng=rng)


def digits_client(
    fl: Any, task: Any, shard: int, shuffles: Callable[[dict[str, Any]], np.random.Generator]
) -> Any:
    """A Flower NumPyClient for device ``shard``: one round of local training per ``fit``, with
    the shuffle generator ``shuffles(config)`` gives for that round. Weight 1: hefl's FedAvg
    averages devices uniformly, so Flower does the same here."""
    x, y = device_data(task, shard)
    numpy_client: Any = fl.client.NumPyClient

    class DigitsClient(numpy_client):  # type: ignore[misc,valid-type]
        def fit(
            self, parameters: list[Any], config: dict[str, Any]
        ) -> tuple[Any, int, dict[str, Any]]:
            layers = [np.array(p, dtype=np.float32) for p in parameters]
            train_round(layers, x, y, shuffles(config))
            return layers, 1, {}

    return DigitsClient()


def timed_fedavg(fl: Any, task: Any, report: dict[str, Any], **options: Any) -> Any:
    """Flower's FedAvg over every device, recording into ``report`` each round's wall time
    (``configure_fit`` to the end of ``aggregate_fit``), how many results it aggregated, and the
    global model's test accuracy."""
    clients, width = int(task["clients"]), int(task["width"])
    test_x, test_y = task["test_x"].astype(np.float32), task["test_y"].astype(np.int64)
    started: dict[int, float] = {}
    for key in ("round_seconds", "accuracy", "aggregated_clients"):
        report.setdefault(key, {})

    def evaluate(round_number: int, parameters: list[Any], config: dict[str, Any]) -> Any:
        accuracy = mlp.accuracy([np.asarray(p) for p in parameters], test_x, test_y)
        report["accuracy"][str(round_number)] = accuracy
        return 0.0, {"accuracy": accuracy}

    fedavg: Any = fl.server.strategy.FedAvg

    class TimedFedAvg(fedavg):  # type: ignore[misc,valid-type]
        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> Any:
            started[server_round] = time.perf_counter()
            return super().configure_fit(server_round, parameters, client_manager)

        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            # Under SecAggPlusWorkflow this receives the unmasked sum: the end of the round too.
            aggregated = super().aggregate_fit(server_round, results, failures)
            report["round_seconds"][str(server_round)] = time.perf_counter() - started[server_round]
            report["aggregated_clients"][str(server_round)] = len(results)
            return aggregated

    return TimedFedAvg(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=clients,
        min_available_clients=clients,
        evaluate_fn=evaluate,
        initial_parameters=fl.common.ndarrays_to_parameters(mlp.split(task["initial"], width)),
        **options,
    )
