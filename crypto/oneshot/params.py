"""Parameters of the oneshot masking profile and the checks that make a parameter set safe."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from crypto.shamir import FIELD_MODULUS

RING_DIMENSION = 2048
SECRET_STDDEV = 4.5
# Hint-RLWE: revealing s_1 + s_2 leaves about sigma / sqrt(2); an error width sqrt(2) times the
# secret's keeps the post-hint widths at or above the HE standard's 3.19 (Willow uses the same).
ERROR_STDDEV = math.sqrt(2.0) * SECRET_STDDEV
# Failure of the decoder needs the error sum beyond this many of its standard deviations. The
# sum of independent centred discrete Gaussians is sub-Gaussian, so the chance per coefficient
# is at most 2 exp(-z^2 / 2) < 2^-100.
DECODE_TAIL_SIGMAS = 12.0
DEFAULT_SHIFT_BITS_APPROX = 2
MODULUS_BITS_CHOICES = (32, 39)
MAX_BITS = 32

# Largest log2 q for 128-bit classical security with a uniform or Gaussian secret (HE standard,
# Albrecht et al. 2018, as encoded in OpenFHE's stdlatticeparms.cpp).
HE_STANDARD_MAX_LOG_Q_128 = {1024: 29, 2048: 56, 4096: 111, 8192: 218, 16384: 438, 32768: 881}


class ParameterError(ValueError):
    """A oneshot parameter set is inconsistent, insecure or cannot decode exactly."""


class SumMode(enum.IntEnum):
    """How the quantized values add up; the values match ``hefl.v1.SumMode``."""

    MOD = 1
    EXACT = 2
    APPROX = 3


def default_shift_bits(max_summands: int) -> int:
    """The message shift d = ceil(log2(n_max + 4)) that the exact decoder needs."""
    return (max_summands + 3).bit_length()


def exact_sum_bits(bits: int, max_summands: int) -> int:
    """Bits of the integer sum of ``max_summands`` values of ``bits`` bits, without wrap."""
    return (max_summands * ((1 << bits) - 1)).bit_length()


def decode_noise_bound(
    max_summands: int, gap_bits: int, error_stddev: float = ERROR_STDDEV
) -> float:
    """Bound on |noise| in q'-units at decode: the rounding sum plus the scaled error sum.

    Each client rounds u * q'/q to the nearest integer (|r_i| <= 1/2, deterministic), and the
    error sum E = sum e_i appears scaled by q'/q = 2^-gap_bits; |E| exceeds
    ``DECODE_TAIL_SIGMAS`` standard deviations with probability below 2^-100.
    """
    error_sum = DECODE_TAIL_SIGMAS * error_stddev * math.sqrt(max_summands)
    return max_summands / 2 + math.ldexp(error_sum, -gap_bits)


@dataclass(frozen=True)
class OneshotParams:
    """One oneshot parameter set; construct with :meth:`create` unless all fields are known.

    Attributes:
        mode: Sum semantics (mod 2^bits, exact integer sum, or approximate behind a flag).
        bits: Width b of each client's quantized field.
        max_summands: Largest number of uploads n_max an aggregate may hold.
        shift_bits: log2 of the message scale Delta' = 2^d.
        modulus_bits: log2 of the RLWE modulus q = 2^k.
        ring_dimension: n of Z_q[x]/(x^n + 1).
        secret_stddev: Width of the discrete Gaussian secret.
        error_stddev: Width of the discrete Gaussian error.
        allow_approx: The explicit opt-in that :attr:`SumMode.APPROX` requires.
    """

    mode: SumMode
    bits: int
    max_summands: int
    shift_bits: int
    modulus_bits: int
    ring_dimension: int = RING_DIMENSION
    secret_stddev: float = SECRET_STDDEV
    error_stddev: float = ERROR_STDDEV
    allow_approx: bool = False

    @classmethod
    def create(
        cls,
        mode: SumMode,
        bits: int,
        max_summands: int,
        *,
        allow_approx: bool = False,
        shift_bits: int | None = None,
        modulus_bits: int | None = None,
    ) -> OneshotParams:
        """Builds the smallest-upload parameter set for a mode, choosing d and q.

        Args:
            mode: The sum mode.
            bits: Field width b (1 to 32).
            max_summands: Largest number of uploads in one aggregate.
            allow_approx: Must be True for :attr:`SumMode.APPROX`.
            shift_bits: Override d; defaults to ceil(log2(n_max + 4)) (2 in approx mode).
            modulus_bits: Override k; defaults to 32, else 39, else the smallest that decodes.

        Raises:
            ParameterError: if no valid set exists for these inputs.
        """
        if shift_bits is None:
            if mode is SumMode.APPROX:
                shift_bits = DEFAULT_SHIFT_BITS_APPROX
            else:
                shift_bits = default_shift_bits(max(max_summands, 1))
        if modulus_bits is None:
            modulus_bits = _choose_modulus_bits(mode, bits, max_summands, shift_bits)
        return cls(
            mode=mode,
            bits=bits,
            max_summands=max_summands,
            shift_bits=shift_bits,
            modulus_bits=modulus_bits,
            allow_approx=allow_approx,
        )

    def __post_init__(self) -> None:
        """Checks the set; see :func:`check_params`."""
        check_params(self)

    @property
    def sum_bits(self) -> int:
        """Width of the decoded sum: b in mod and approx mode, the no-wrap width in exact mode."""
        if self.mode is SumMode.EXACT:
            return exact_sum_bits(self.bits, self.max_summands)
        return self.bits

    @property
    def rounded_modulus_bits(self) -> int:
        """Kp = log2 q': bits per coefficient on the wire."""
        return self.sum_bits + self.shift_bits

    @property
    def gap_bits(self) -> int:
        """log2(q / q'): the bits dropped by rounding the mask."""
        return self.modulus_bits - self.rounded_modulus_bits

    @property
    def share_field_modulus(self) -> int:
        """Prime field of the Shamir shares of the secret."""
        return FIELD_MODULUS

    @property
    def decode_margin(self) -> float:
        """Delta'/2 minus the noise bound, in q'-units; positive means exact decoding."""
        noise = decode_noise_bound(self.max_summands, self.gap_bits, self.error_stddev)
        return 2.0 ** (self.shift_bits - 1) - noise

    def block_count(self, parameter_count: int) -> int:
        """Ring blocks B = ceil(D / n) that hold ``parameter_count`` values."""
        return -(-parameter_count // self.ring_dimension)


def _choose_modulus_bits(mode: SumMode, bits: int, max_summands: int, shift_bits: int) -> int:
    if not 1 <= bits <= MAX_BITS or max_summands < 1:
        raise ParameterError(f"need 1 <= bits <= {MAX_BITS} and max_summands >= 1")
    sum_bits = exact_sum_bits(bits, max_summands) if mode is SumMode.EXACT else bits
    rounded = sum_bits + shift_bits
    if mode is SumMode.APPROX:
        return max(MODULUS_BITS_CHOICES[0], rounded + 1)
    limit = 2.0 ** (shift_bits - 1)
    gap = 1
    while decode_noise_bound(max_summands, gap) >= limit:
        gap += 1
        if gap > 64:
            raise ParameterError(
                f"shift_bits d={shift_bits} leaves no noise margin for {max_summands} summands; "
                f"use d >= {default_shift_bits(max_summands)}"
            )
    for candidate in MODULUS_BITS_CHOICES:
        if candidate - rounded >= gap:
            return candidate
    return rounded + gap


def check_params(params: OneshotParams) -> None:
    """Validates a parameter set.

    Raises:
        ParameterError: naming the violated condition: ring dimension, HE-standard bound on q,
            Hint-RLWE widths, field width, exact-decoding margin, or approx without its flag.
    """
    n = params.ring_dimension
    if n not in HE_STANDARD_MAX_LOG_Q_128:
        raise ParameterError(f"ring dimension {n} is not a power of two in 1024..32768")
    if not 1 <= params.bits <= MAX_BITS:
        raise ParameterError(f"bits must be in 1..{MAX_BITS}, got {params.bits}")
    if params.max_summands < 1:
        raise ParameterError(f"max_summands must be at least 1, got {params.max_summands}")
    if params.shift_bits < 0:
        raise ParameterError(f"shift_bits must be non-negative, got {params.shift_bits}")
    if not (math.isfinite(params.secret_stddev) and math.isfinite(params.error_stddev)):
        raise ParameterError("standard deviations must be finite")
    if params.secret_stddev < SECRET_STDDEV:
        raise ParameterError(f"secret stddev {params.secret_stddev} is below {SECRET_STDDEV}")
    # A relative slack lets the rounded 6.36 that documents quote pass.
    if params.error_stddev < math.sqrt(2.0) * params.secret_stddev * (1 - 1e-3):
        raise ParameterError(
            f"error stddev {params.error_stddev} is below sqrt(2) * secret stddev "
            f"({math.sqrt(2.0) * params.secret_stddev:.4f}): the Hint-RLWE argument needs it"
        )
    k, kp = params.modulus_bits, params.rounded_modulus_bits
    he_bound = HE_STANDARD_MAX_LOG_Q_128[n]
    if k > he_bound:
        raise ParameterError(
            f"q = 2^{k} exceeds the HE-standard 128-bit bound 2^{he_bound} for n = {n}"
        )
    if kp < 1 or k <= kp:
        raise ParameterError(f"need 1 <= log2 q' < log2 q, got q' = 2^{kp}, q = 2^{k}")
    if params.mode is SumMode.APPROX:
        if not params.allow_approx:
            raise ParameterError("approx mode decodes with a few LSB of error: set allow_approx")
        return
    if params.decode_margin <= 0:
        raise ParameterError(
            f"d = {params.shift_bits} and q/q' = 2^{params.gap_bits} do not decode "
            f"{params.max_summands} summands exactly: need Delta'/2 = 2^(d-1) > n_max/2 + "
            f"(q'/q) * {DECODE_TAIL_SIGMAS:g} * sigma_e * sqrt(n_max) (note section 1); "
            f"use d >= {default_shift_bits(params.max_summands)} and a larger q, "
            "or let OneshotParams.create choose them"
        )
