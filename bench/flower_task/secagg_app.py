"""Flower ServerApp and ClientApp: the digits task under FedAvg with SecAgg+.

bench/flower_task/secagg.py copies this file and mlp.py into the package of a Flower App
(hence the relative import) and runs it on Flower's Deployment Engine. Run configuration keys:
``task`` (the .npz of bench/suites/flower.py), ``num-server-rounds``, ``report`` (where the
ServerApp writes its JSON report: run.py's format, plus ``aggregated_clients``, how many
clients' masked updates each round's secure sum held). The ServerApp drives the legacy FedAvg
strategy through SecAggPlusWorkflow; the ClientApp's secaggplus_mod masks its update. Round
time is from ``configure_fit`` to the end of ``aggregate_fit``, as run.py."""

from __future__ import annotations

import importlib
import json
from typing import Any

import numpy as np

from . import common

fl: Any = importlib.import_module("flwr")  # untyped, and only in .venv-flower
_workflow: Any = importlib.import_module("flwr.server.workflow")
_mods: Any = importlib.import_module("flwr.client.mod")

server = fl.server.ServerApp()


@server.main()  # type: ignore[misc,untyped-decorator]
def main(grid: Any, context: Any) -> None:
    """FedAvg for ``num-server-rounds`` rounds, each aggregated with SecAgg+."""
    task = np.load(context.run_config["task"])
    clients = int(task["clients"])
    report: dict[str, Any] = {"flwr": fl.__version__, "clients": clients}
    report["rounds"] = int(context.run_config["num-server-rounds"])
    legacy = fl.server.LegacyContext(
        context=context,
        config=fl.server.ServerConfig(num_rounds=report["rounds"]),
        strategy=common.timed_fedavg(
            fl, task, report, on_fit_config_fn=lambda server_round: {"server_round": server_round}
        ),
    )
    # Every client holds a share; any majority can reconstruct a dropout's mask. Weights are 1
    # (uniform FedAvg, as hefl), so max_weight 1 keeps the quantization range for the values.
    secagg = _workflow.SecAggPlusWorkflow(
        num_shares=clients, reconstruction_threshold=clients // 2 + 1, max_weight=1
    )
    _workflow.DefaultWorkflow(fit_workflow=secagg)(grid, legacy)
    with open(context.run_config["report"], "w", encoding="utf-8") as handle:
        json.dump(report, handle)


def _client_fn(context: Any) -> Any:
    shard = int(context.node_config["partition-id"])
    task = np.load(context.run_config["task"])
    seed = common.device_seed(task, shard)
    rows = len(common.device_data(task, shard)[1])

    def shuffles(config: dict[str, Any]) -> np.random.Generator:
        # Each message runs in a fresh ClientApp process: replay the earlier rounds' shuffles
        # so that round r trains on run.py's client's r-th shuffles.
        rng = np.random.default_rng(seed)
        for _ in range((int(config["server_round"]) - 1) * common.LOCAL_EPOCHS):
            rng.permutation(rows)
        return rng

    return common.digits_client(fl, task, shard, shuffles).to_client()


client = fl.client.ClientApp(client_fn=_client_fn, mods=[_mods.secaggplus_mod])
