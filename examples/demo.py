"""``make demo``: a real federated training on loopback, privately, on scikit-learn's digits.

One coordinator and ten worker processes (five of them key holders) train a small MLP on a
non-IID split of the digits data: each device trains locally, quantizes, adds its share of the
DP noise, masks its update under the oneshot profile and uploads it; the coordinator adds the
masked updates, the committee opens only the certified sum, and every device gets the compact
correction. Each round prints its contributors, the new model's test accuracy, the privacy
spent and the bytes received; the run ends with a plot of accuracy and epsilon by round.

``--plaintext`` runs the same federation without encryption and without DP, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from examples.federation import (
    FederationSpec,
    LocalFederation,
    Observer,
    RoundReport,
    initial_accuracy,
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses the demo's options."""
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--plaintext", action="store_true", help="no encryption and no DP")
    parser.add_argument("--no-dp", action="store_true", help="encrypted, without DP noise")
    parser.add_argument("--profile", default="oneshot", help="oneshot | fast | provable")
    parser.add_argument("--epsilon", type=float, default=30.0, help="privacy budget of the run")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--key-holders", type=int, default=5)
    parser.add_argument("--bits", type=int, default=16)
    parser.add_argument("--clip-norm", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="demo-output", help="folder for state, logs, plot")
    return parser.parse_args(argv)


def _line(report: RoundReport) -> str:
    accuracy = "  --  " if math.isnan(report.accuracy) else f"{report.accuracy:6.3f}"
    return (
        f"round {report.round_number:3d}  {report.outcome:<14}"
        f" contributors {report.contributors:3d}"
        f"  accuracy {accuracy}  epsilon {report.epsilon:7.3f}  bytes in {report.bytes_in:>10,}"
        f"  ({report.seconds:4.1f} s)"
    )


def plot(reports: list[RoundReport], path: Path, title: str) -> None:
    """Accuracy and epsilon by round, on two axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    rounds = [r.round_number for r in reports]
    figure, accuracy_axis = plt.subplots(figsize=(7, 4))
    accuracy_axis.plot(rounds, [r.accuracy for r in reports], "o-", color="tab:blue")
    accuracy_axis.set_xlabel("round")
    accuracy_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    accuracy_axis.set_ylabel("test accuracy", color="tab:blue")
    accuracy_axis.set_ylim(0, 1)
    epsilon_axis = accuracy_axis.twinx()
    epsilon_axis.plot(rounds, [r.epsilon for r in reports], "s--", color="tab:red")
    epsilon_axis.set_ylabel("epsilon spent", color="tab:red")
    accuracy_axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


async def run(args: argparse.Namespace) -> int:
    """Runs the federation and reports."""
    output = Path(args.output).resolve()
    if output.exists():
        shutil.rmtree(output)
    profile = "plaintext" if args.plaintext else args.profile
    spec = FederationSpec(
        workdir=output,
        workers=args.workers,
        key_holders=args.key_holders,
        profile=profile,
        dp=not (args.plaintext or args.no_dp),
        epsilon=args.epsilon,
        rounds=args.rounds,
        bits=args.bits,
        clip_norm=args.clip_norm,
        seed=args.seed,
    )
    privacy = (
        f"DP epsilon {spec.epsilon} at delta {spec.delta} over {spec.rounds} rounds"
        if spec.dp
        else "no DP"
    )
    print(
        f"hefl demo: {spec.workers} workers ({spec.key_holders if profile != 'plaintext' else 0}"
        f" key holders), profile {profile}, {privacy}, {spec.bits}-bit updates"
    )
    print(f"initial accuracy {initial_accuracy(spec):.3f}; state and logs in {output}")
    federation = LocalFederation(spec)
    started = time.monotonic()
    coordinator = federation.start()
    try:
        observer = Observer(coordinator.grpc_address, spec)
        await observer.enroll()
        reports = await observer.follow(spec.rounds, on_round=lambda r: print(_line(r), flush=True))
    finally:
        exit_code = federation.stop()
    published = [r for r in reports if r.version]
    if not published:
        print("no round published; see the logs in", output, file=sys.stderr)
        return 1
    final = published[-1]
    title = f"hefl {profile}, {privacy}"
    plot(published, output / "demo.png", title)
    (output / "results.json").write_text(
        json.dumps(
            {"profile": profile, "dp": spec.dp, "rounds": [asdict(r) for r in reports]}, indent=2
        )
    )
    print(
        f"final accuracy {final.accuracy:.3f} after {len(published)} published rounds;"
        f" epsilon spent {final.epsilon:.3f}"
        + (f" of {spec.epsilon} (delta {spec.delta})" if spec.dp else " (no DP)")
        + f"; {time.monotonic() - started:.0f} s; coordinator exit code {exit_code}"
    )
    print(f"plot: {output / 'demo.png'}  results: {output / 'results.json'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m examples.demo``."""
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
