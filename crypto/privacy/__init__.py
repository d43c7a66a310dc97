"""Privacy accounting and noise calibration for the distributed Skellam mechanism."""

from __future__ import annotations

from crypto.privacy.accountant import (
    ACCOUNTANT_NAME,
    SkellamAccountant,
    composed_epsilon,
    round_rdp,
)
from crypto.privacy.calibration import (
    DEFAULT_BETA,
    Calibration,
    CalibrationError,
    CalibrationTarget,
    calibrate,
    required_noise_multiplier,
)
from crypto.privacy.gaussian import (
    GaussianReference,
    GaussianRun,
    gaussian_epsilon_pld,
    gaussian_epsilon_rdp,
    gaussian_reference,
)
from crypto.privacy.ledger import (
    BudgetExceededError,
    LedgerEntry,
    LedgerError,
    PrivacyLedger,
    RoundCharge,
    RoundOutcome,
    charged_mechanism,
)
from crypto.privacy.mechanism import MECHANISM_NAME, SkellamRound
from crypto.privacy.modulus import aggregate_bits, wrap_probability
from crypto.privacy.rdp import (
    DEFAULT_ORDERS,
    gaussian_rdp,
    poisson_subsampled_rdp,
    rdp_to_epsilon,
    skellam_rdp,
)
from crypto.privacy.sampling import Sampling
from crypto.privacy.sensitivity import rounded_l1_sensitivity, rounded_l2_sensitivity

__all__ = [
    "ACCOUNTANT_NAME",
    "DEFAULT_BETA",
    "DEFAULT_ORDERS",
    "MECHANISM_NAME",
    "BudgetExceededError",
    "Calibration",
    "CalibrationError",
    "CalibrationTarget",
    "GaussianReference",
    "GaussianRun",
    "LedgerEntry",
    "LedgerError",
    "PrivacyLedger",
    "RoundCharge",
    "RoundOutcome",
    "Sampling",
    "SkellamAccountant",
    "SkellamRound",
    "aggregate_bits",
    "calibrate",
    "charged_mechanism",
    "composed_epsilon",
    "gaussian_epsilon_pld",
    "gaussian_epsilon_rdp",
    "gaussian_rdp",
    "gaussian_reference",
    "poisson_subsampled_rdp",
    "rdp_to_epsilon",
    "required_noise_multiplier",
    "round_rdp",
    "rounded_l1_sensitivity",
    "rounded_l2_sensitivity",
    "skellam_rdp",
    "wrap_probability",
]
