"""The digits MLP (64-width-10) in numpy: forward, SGD with cross-entropy, accuracy.

Mirrors examples/digits.py's torch model and TorchTrainer loop (plain SGD, mean cross-entropy
over a batch, shuffled batches, last partial batch kept) with torch's parameter layout:
``[W1 (width x 64), b1, W2 (10 x width), b2]``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float32]
Layers = list[Array]


def split(flat: Array, width: int) -> Layers:
    """A flat parameter vector in torch's ``parameters()`` order -> the four layer arrays."""
    shapes = [(width, 64), (width,), (10, width), (10,)]
    counts = [int(np.prod(shape)) for shape in shapes]
    if sum(counts) != flat.size:
        raise ValueError(f"{flat.size} parameters, width {width} needs {sum(counts)}")
    layers, offset = [], 0
    for shape, count in zip(shapes, counts, strict=True):
        layers.append(flat[offset : offset + count].reshape(shape).astype(np.float32))
        offset += count
    return layers


def logits(layers: Layers, x: Array) -> Array:
    """Forward pass."""
    w1, b1, w2, b2 = layers
    hidden = np.maximum(x @ w1.T + b1, 0.0)
    out: Array = hidden @ w2.T + b2
    return out


def sgd_step(layers: Layers, x: Array, y: npt.NDArray[np.int64], lr: float) -> float:
    """One SGD step on a batch (in place); returns the batch's mean cross-entropy."""
    w1, b1, w2, b2 = layers
    pre = x @ w1.T + b1
    hidden = np.maximum(pre, 0.0)
    scores = hidden @ w2.T + b2
    scores -= scores.max(axis=1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = float(-np.log(probs[np.arange(len(y)), y] + 1e-12).mean())
    grad = probs
    grad[np.arange(len(y)), y] -= 1.0
    grad /= len(y)
    grad_hidden = (grad @ w2) * (pre > 0)
    w2 -= lr * (grad.T @ hidden)
    b2 -= lr * grad.sum(axis=0)
    w1 -= lr * (grad_hidden.T @ x)
    b1 -= lr * grad_hidden.sum(axis=0)
    return loss


def train(
    layers: Layers,
    x: Array,
    y: npt.NDArray[np.int64],
    *,
    lr: float,
    epochs: int,
    batch: int,
    rng: np.random.Generator,
) -> float:
    """``epochs`` passes of shuffled mini-batch SGD (in place); returns the mean loss."""
    total, seen = 0.0, 0
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch):
            rows = order[start : start + batch]
            total += sgd_step(layers, x[rows], y[rows], lr) * len(rows)
            seen += len(rows)
    return total / max(seen, 1)


def accuracy(layers: Layers, x: Array, y: npt.NDArray[np.int64]) -> float:
    """Fraction of correct predictions."""
    return float((logits(layers, x).argmax(axis=1) == y).mean())
