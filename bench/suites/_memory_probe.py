"""Peak memory of one device process: plain PyTorch training, with or without hefl's encoding.

Run by the worker suite as a child process, one per measurement, because a process's peak
resident set (VmHWM) only ever grows:

    python -m bench.suites._memory_probe --model mlp --width 13333 --rounds 3 --profile oneshot

prints one JSON line ``{"vmhwm_kib": ..., "maxrss_kib": ..., "parameters": ...}``.

``--profile none`` is the baseline: the digits MLP trained with plain torch and scikit-learn,
nothing of hefl imported (examples/digits.py is not used because it imports the hefl worker
runtime). ``oneshot`` and ``fast`` add what a device adds each round: the worker runtime's
libraries (``import edge_worker``), the codec (clip, rotate, quantize, Skellam noise) and the
mask or the BGV encryption, producing the upload payload in memory.

Not a suite (the leading underscore keeps it out of the registry).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from sklearn.datasets import load_digits
from torch import nn

from bench.suites._procfs import parse_vmhwm_kib

Encode = Callable[[npt.NDArray[np.float32], int], bytes]
BITS = 16
MAX_SUMMANDS = 100
BATCH = 16
SHARDS = 10  # a tenth of the data: one device of the federation suite's ten


def vmhwm_kib() -> int:
    """This process's peak resident set (Linux), in KiB."""
    return parse_vmhwm_kib(Path("/proc/self/status").read_text(encoding="utf-8"))


def build_model(kind: str, width: int = 128, seed: int = 0) -> nn.Module:
    """A seeded model for 8x8 digits given as 64 features.

    ``mlp``: the digits MLP of examples/digits.py (64-width-10), built here without importing
    hefl. ``cnn``: four 3x3 convolutions (32, 64, 128, 256 channels, two 2x2 poolings) and a
    1024-512-10 head, 917,770 parameters: about 12 multiply-adds per parameter per example
    where an MLP does one, as convolutional edge models do.
    """
    torch.manual_seed(seed)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))
    if kind != "cnn":
        raise ValueError(f"unknown model kind {kind!r}")
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(128, 256, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(1024, 512),
        nn.ReLU(),
        nn.Linear(512, 10),
    )


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def _batches() -> list[tuple[torch.Tensor, torch.Tensor]]:
    digits = load_digits()
    x = torch.from_numpy((digits.data[::SHARDS] / 16.0).astype(np.float32))
    y = torch.from_numpy(digits.target[::SHARDS].astype(np.int64))
    return [(x[i : i + BATCH], y[i : i + BATCH]) for i in range(0, len(y), BATCH)]


def _train(model: nn.Module, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for _ in range(2):  # the federation's local epochs
        for inputs, targets in batches:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(inputs), targets)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()


def _codec_config(parameters: int, dp: bool) -> object:
    from crypto.codec import CodecConfig, local_noise_variance, modular_sum_scale

    # b=16 mod with Skellam noise at one clipped update's spread, as crypto.codec.* measures;
    # without DP the same scale and no noise.
    probe = CodecConfig(
        bits=BITS,
        sum_mode="mod",
        clip_norm=1.0,
        scale=1.0,
        parameter_count=parameters,
        max_summands=MAX_SUMMANDS,
    )
    sigma = 1.0 / np.sqrt(probe.padded_length)
    scale = modular_sum_scale(BITS, 1.0, probe.padded_length, MAX_SUMMANDS, local_noise_std=sigma)
    return CodecConfig(
        bits=BITS,
        sum_mode="mod",
        clip_norm=1.0,
        scale=scale,
        parameter_count=parameters,
        max_summands=MAX_SUMMANDS,
        local_noise_variance=local_noise_variance(sigma, scale) if dp else 0.0,
    )


def _fields(delta: npt.NDArray[np.float32], config: object, round_number: int) -> object:
    from crypto.codec import CodecConfig, encode, rotation_for

    assert isinstance(config, CodecConfig)
    rotation = rotation_for(config, round_number.to_bytes(8, "little") * 4)
    return encode(delta, config, rotation).fields


def oneshot_encoder(parameters: int, dp: bool) -> Encode:
    """Codec + mask_update with sealed shares for a 3-of-5 committee, as OneshotEncoder."""
    from crypto import sealing
    from crypto.oneshot import (
        MemberKey,
        OneshotParams,
        RoundBinding,
        SumMode,
        UsedRounds,
        mask_update,
        params_to_proto,
    )
    from hefl.v1 import common_pb2

    config = _codec_config(parameters, dp)
    params = OneshotParams.create(SumMode.MOD, BITS, MAX_SUMMANDS)
    members = [MemberKey(i + 1, sealing.SealingKey.generate().public_bytes) for i in range(5)]
    used = UsedRounds()

    def encode(delta: npt.NDArray[np.float32], round_number: int) -> bytes:
        descriptor = common_pb2.RoundDescriptor(
            federation_id="bench",
            round_number=round_number,
            seed=os.urandom(32),
            committee_epoch=1,
            profile=common_pb2.CRYPTO_PROFILE_ONESHOT,
            codec=common_pb2.CodecParams(
                bits=BITS,
                sum_mode=common_pb2.SUM_MODE_MOD,
                parameter_count=parameters,
                max_summands=MAX_SUMMANDS,
                oneshot=params_to_proto(params),
            ),
        ).SerializeToString()
        fields = _fields(delta, config, round_number)
        masked = mask_update(
            RoundBinding(descriptor),
            params,
            fields,  # type: ignore[arg-type]
            used,
            members=members,
            threshold=3,
            worker_id="probe",
        )
        return masked.payload + b"".join(s.sealed.ciphertext for s in masked.sealed_shares)

    return encode


def fast_encoder(parameters: int, dp: bool, material: Path) -> Encode:
    """Codec + packing + BGV encryption under a joint public key, as BgvEncoder."""
    from crypto import bgv
    from crypto.codec import pack_fields

    blobs = json.loads(material.read_text(encoding="utf-8"))
    ctx = bgv.open_context(bgv.FAST, context_bytes=bytes.fromhex(blobs["context"]))
    encryptor = bgv.Encryptor(ctx, bytes.fromhex(blobs["joint_public_key"]))
    config = _codec_config(parameters, dp)

    def encode(delta: npt.NDArray[np.float32], round_number: int) -> bytes:
        fields = _fields(delta, config, round_number)
        slots = pack_fields(
            fields,  # type: ignore[arg-type]
            bits=BITS,
            max_summands=MAX_SUMMANDS,
            plaintext_modulus=ctx.plaintext_modulus,
        )
        return b"".join(bgv.encode_frames(encryptor.encrypt(slots)))

    return encode


def run(
    kind: str,
    width: int,
    rounds: int,
    profile: str,
    dp: bool = True,
    material: Path | None = None,
) -> dict[str, int]:
    """Trains ``rounds`` rounds (encoding each delta unless ``profile`` is none)."""
    model = build_model(kind, width)
    parameters = parameter_count(model)
    batches = _batches()
    encode: Encode | None = None
    if profile != "none":
        import edge_worker  # noqa: F401 - the device runtime's libraries are part of its cost

        if profile == "oneshot":
            encode = oneshot_encoder(parameters, dp)
        else:
            assert material is not None, "--bgv-material is required for fast"
            encode = fast_encoder(parameters, dp, material)
    payload_bytes = 0
    for round_number in range(1, rounds + 1):
        start = nn.utils.parameters_to_vector(model.parameters()).detach().clone()
        _train(model, batches)
        end = nn.utils.parameters_to_vector(model.parameters()).detach()
        delta = (end - start).numpy().astype(np.float32)
        if encode is not None:
            payload_bytes = len(encode(delta, round_number))
        # Like the worker runtime: the module goes back to the global model after each round.
        nn.utils.vector_to_parameters(start, model.parameters())
    return {
        "vmhwm_kib": vmhwm_kib(),
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "parameters": parameters,
        "payload_bytes": payload_bytes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of the probe; prints one JSON line."""
    parser = argparse.ArgumentParser(prog="python -m bench.suites._memory_probe")
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    parser.add_argument("--width", type=int, default=128, help="MLP width")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", choices=("none", "oneshot", "fast"), default="none")
    parser.add_argument("--no-dp", dest="dp", action="store_false", help="codec without noise")
    parser.add_argument("--bgv-material", type=Path, help="JSON: context and joint key (hex)")
    args = parser.parse_args(argv)
    result = run(args.model, args.width, args.rounds, args.profile, args.dp, args.bgv_material)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
