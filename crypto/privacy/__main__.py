"""Command line: ``python -m crypto.privacy`` calibrates a target and prints what it achieves."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

from crypto.privacy.calibration import (
    DEFAULT_BETA,
    Calibration,
    CalibrationError,
    CalibrationTarget,
    calibrate,
)
from crypto.privacy.gaussian import GaussianRun, gaussian_reference
from crypto.privacy.ledger import PrivacyLedger
from crypto.privacy.sampling import Sampling


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m crypto.privacy",
        description="Calibrate the distributed Skellam mechanism for an (epsilon, delta) target.",
    )
    parser.add_argument("--epsilon", type=float, required=True)
    parser.add_argument("--delta", type=float, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--contributors", type=int, required=True, help="n_min")
    parser.add_argument("--clip", type=float, required=True)
    parser.add_argument("--dim", type=int, required=True, help="padded dimension d")
    parser.add_argument("--bits", type=int, required=True)
    parser.add_argument("--beta", type=float, default=DEFAULT_BETA)
    parser.add_argument("--sampling", default="none", help="'none' or 'poisson:<q>'")
    parser.add_argument("--k", type=float, default=4.0, help="standard deviations in the modulus")
    parser.add_argument("--max-contributors", type=int, default=None)
    parser.add_argument("--rotation-dim", type=int, default=None)
    parser.add_argument("--pld", action="store_true", help="also run the Gaussian PLD reference")
    return parser


def describe(calibration: Calibration, *, with_pld: bool) -> list[str]:
    """Human-readable lines about a calibration, its budget and its Gaussian reference."""
    target, mech = calibration.target, calibration.mechanism
    ledger = PrivacyLedger.for_calibration(calibration)
    reference = gaussian_reference(
        [GaussianRun(mech.noise_multiplier, target.rounds, mech.sampling)],
        target.delta,
        with_pld=with_pld,
    )
    optimistic = "(optimistic, not a guarantee)"
    rows = [
        ("scale s = 1/gamma", f"{mech.scale:.6g}"),
        ("local noise variance (int)", f"{mech.local_noise_variance:.6g}"),
        ("local noise std (model)", f"{mech.local_stddev:.6g}"),
        ("central variance mu (int)", f"{mech.central_variance:.6g}"),
        (
            "L2 sensitivity (int)",
            f"{mech.l2_sensitivity:.6g}  (c*s = {mech.clip * mech.scale:.6g})",
        ),
        ("L1 sensitivity (int)", f"{mech.l1_sensitivity:.6g}"),
        ("noise multiplier, effective", f"{mech.noise_multiplier:.6g}"),
        ("noise multiplier, nominal", f"{mech.nominal_noise_multiplier:.6g}  (no inflation)"),
        (
            f"epsilon after {target.rounds} rounds",
            f"{calibration.epsilon:.6g}  (target {target.epsilon:g}, delta {target.delta:g}, "
            f"order {calibration.optimal_order:g})",
        ),
        ("rounds the budget allows", f"{ledger.rounds_left(mech)}"),
        ("aggregate bits needed", f"{calibration.aggregate_bits:.4f} of {target.bits}"),
        ("wrap probability / coord", f"{calibration.wrap_probability:.2g}"),
        (
            "server error std (model)",
            f"{math.sqrt(calibration.server_error_variance()):.6g}"
            f"  (n={target.calibrated_contributors})",
        ),
        ("Gaussian reference, RDP", f"{reference.epsilon_rdp:.6g}  {optimistic}"),
    ]
    if reference.epsilon_pld is not None:
        rows.append(("Gaussian reference, PLD", f"{reference.epsilon_pld:.6g}  {optimistic}"))
    return [f"{label:<30}{value}" for label, value in rows]


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        target = CalibrationTarget(
            epsilon=args.epsilon,
            delta=args.delta,
            rounds=args.rounds,
            calibrated_contributors=args.contributors,
            clip=args.clip,
            dim=args.dim,
            bits=args.bits,
            beta=args.beta,
            sampling=Sampling.parse(args.sampling),
            k_stddevs=args.k,
            max_contributors=args.max_contributors,
            rotation_dim=args.rotation_dim,
        )
        start = time.perf_counter()
        calibration = calibrate(target)
        elapsed = time.perf_counter() - start
    except (CalibrationError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in describe(calibration, with_pld=args.pld):
        print(line)
    print(f"{'calibration time':<30}{elapsed:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
