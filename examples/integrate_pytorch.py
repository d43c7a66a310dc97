"""An existing PyTorch training script, turned into a hefl device with one call.

Everything above ``federate`` is ordinary PyTorch: a model, an optimizer and data loaders over
data that stays on the device. Run a coordinator first (``make coordinator``), then::

    python -m examples.integrate_pytorch --coordinator 127.0.0.1:50051 --shard 0/4
"""

from __future__ import annotations

import argparse

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import edge_worker
from examples import digits


def local_data(shard: int, shards: int) -> tuple[DataLoader, DataLoader]:  # type: ignore[type-arg]
    """This device's private data (here: its non-IID split of the digits data set)."""
    data = digits.load()
    indices = digits.shard_indices(data.train_y, shards, seed=0)[shard]
    train, held_out = indices[indices % 5 != 0], indices[indices % 5 == 0]
    x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    return (
        DataLoader(TensorDataset(x[train], y[train]), batch_size=16, shuffle=True),
        DataLoader(TensorDataset(x[held_out], y[held_out]), batch_size=256),
    )


def main() -> None:
    """Trains this device's model with the federation until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coordinator", default="127.0.0.1:50051")
    parser.add_argument("--federation-id", default="default")
    parser.add_argument("--shard", default="0/4")
    parser.add_argument("--state-dir", default="var/example-device")
    parser.add_argument("--rounds", type=int, default=0, help="stop after this many (0: never)")
    args = parser.parse_args()
    shard, shards = (int(part) for part in args.shard.split("/"))

    # --- the user's own model, optimizer and data ---------------------------------------
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_loader, eval_loader = local_data(shard, shards)

    # --- one call makes it a device of the federation ------------------------------------
    worker = edge_worker.federate(
        module=model,
        optimizer=optimizer,
        train_loader=train_loader,
        eval_loader=eval_loader,
        loss_fn=nn.functional.cross_entropy,
        local_epochs=2,
        update_hooks=[edge_worker.max_update_norm(10.0), edge_worker.max_train_loss(5.0)],
        correction_hooks=[edge_worker.max_correction_norm(5.0)],
        coordinator=args.coordinator,
        federation_id=args.federation_id,
        state_dir=args.state_dir,
        max_rounds=args.rounds,
        on_task=lambda report: print(f"round {report.round_number}: outcome {report.outcome}"),
    )
    counters = worker.run()
    print(f"device {worker.worker_id} contributed to {counters.rounds_contributed} rounds")


if __name__ == "__main__":
    main()
