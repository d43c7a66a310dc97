"""The demo task: scikit-learn's 8x8 digits, split non-IID across devices, and a small MLP.

Everything is deterministic given a seed: the train/test split, the Dirichlet label skew of
each device's shard, and the initial weights. No download is needed (the data set ships with
scikit-learn).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from edge_worker.training import TorchTrainer

HIDDEN = 128
TEST_FRACTION = 0.2


@dataclass(frozen=True)
class DigitsData:
    """Features scaled to [0, 1] and integer labels."""

    train_x: npt.NDArray[np.float32]
    train_y: npt.NDArray[np.int64]
    test_x: npt.NDArray[np.float32]
    test_y: npt.NDArray[np.int64]


@lru_cache(maxsize=4)
def load(seed: int = 0) -> DigitsData:
    """The data set with a seeded, stratified train/test split."""
    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(len(y), dtype=bool)
    for label in range(10):
        members = np.flatnonzero(y == label)
        chosen = rng.choice(members, size=int(round(len(members) * TEST_FRACTION)), replace=False)
        test_mask[chosen] = True
    return DigitsData(x[~test_mask], y[~test_mask], x[test_mask], y[test_mask])


def shard_indices(
    labels: npt.NDArray[np.int64], shards: int, seed: int, alpha: float = 0.5
) -> list[npt.NDArray[np.int64]]:
    """Splits examples across devices with Dirichlet(alpha) label skew (smaller: more skew)."""
    rng = np.random.default_rng(seed + 1)
    parts: list[list[int]] = [[] for _ in range(shards)]
    for label in range(10):
        members = rng.permutation(np.flatnonzero(labels == label))
        weights = rng.dirichlet(np.full(shards, alpha))
        cuts = (np.cumsum(weights)[:-1] * len(members)).astype(int)
        for shard, piece in enumerate(np.split(members, cuts)):
            parts[shard].extend(piece.tolist())
    return [np.array(sorted(p), dtype=np.int64) for p in parts]


def make_model(seed: int = 0, width: int = HIDDEN) -> nn.Module:
    """A 64-width-10 MLP with seeded initial weights (width 128: 9,610 parameters)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))


def parameter_count(width: int = HIDDEN) -> int:
    """Parameters of the MLP of this width."""
    return 64 * width + width + width * 10 + 10


def initial_weights(seed: int = 0, width: int = HIDDEN) -> npt.NDArray[np.float32]:
    """The flat initial parameters every run with this seed and width starts from."""
    model = make_model(seed, width)
    return nn.utils.parameters_to_vector(model.parameters()).detach().numpy().astype(np.float32)


def make_trainer(
    shard: int,
    shards: int,
    *,
    seed: int = 0,
    learning_rate: float = 0.1,
    local_epochs: int = 1,
    batch_size: int = 16,
    width: int = HIDDEN,
) -> TorchTrainer:
    """The trainer of device ``shard`` of ``shards``: its local split and a plain SGD loop."""
    data = load(seed)
    indices = shard_indices(data.train_y, shards, seed)[shard]
    held_out = indices[::5]  # a fifth of the device's data stays local for evaluation
    train = np.setdiff1d(indices, held_out)
    generator = torch.Generator().manual_seed(seed * 1000 + shard)
    train_loader = DataLoader(
        TensorDataset(torch.from_numpy(data.train_x[train]), torch.from_numpy(data.train_y[train])),
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
    )
    eval_loader = DataLoader(
        TensorDataset(
            torch.from_numpy(data.train_x[held_out]), torch.from_numpy(data.train_y[held_out])
        ),
        batch_size=256,
    )
    model = make_model(seed, width)
    return TorchTrainer(
        module=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=learning_rate),
        train_loader=train_loader,
        eval_loader=eval_loader,
        local_epochs=local_epochs,
    )


def test_accuracy(weights: npt.NDArray[np.float32], seed: int = 0, width: int = HIDDEN) -> float:
    """Accuracy of flat weights on the global held-out test split (operator-side reporting)."""
    data = load(seed)
    model = make_model(seed, width)
    with torch.no_grad():
        nn.utils.vector_to_parameters(torch.from_numpy(weights.copy()), model.parameters())
        predictions = model(torch.from_numpy(data.test_x)).argmax(dim=1).numpy()
    return float((predictions == data.test_y).mean())


def main() -> None:
    """``python -m examples.digits PATH [SEED [WIDTH]]``: writes the initial model payload."""
    import sys
    from pathlib import Path

    from edge_worker.model_state import save_initial_model

    path = Path(sys.argv[1])
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    width = int(sys.argv[3]) if len(sys.argv) > 3 else HIDDEN
    values = initial_weights(seed, width)
    save_initial_model(values, path)
    print(f"wrote {path} ({values.size} parameters, seed {seed}, width {width})")


if __name__ == "__main__":
    main()
