"""Crypto profiles for the threshold-HE path: parameters, packing capacity and static guards."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from crypto.bgv.errors import ProfileError


class Scheme(enum.Enum):
    """The RLWE scheme; both are exact on integers mod t."""

    BGV = "BGV"
    BFV = "BFV"


class NoiseMode(enum.Enum):
    """OpenFHE's multiparty decryption noise mode."""

    FIXED = "FIXED_NOISE_MULTIPARTY"
    FLOODING = "NOISE_FLOODING_MULTIPARTY"


class Scaling(enum.Enum):
    """OpenFHE's modulus-switching technique (only meaningful for BGV)."""

    FIXEDMANUAL = "FIXEDMANUAL"
    FIXEDAUTO = "FIXEDAUTO"
    FLEXIBLEAUTO = "FLEXIBLEAUTO"
    FLEXIBLEAUTOEXT = "FLEXIBLEAUTOEXT"
    NORESCALE = "NORESCALE"


@dataclass(frozen=True)
class Layout:
    """A parameter layout whose threshold round was measured exact on this wheel."""

    scheme: Scheme
    noise_mode: NoiseMode
    ring_dimensions: frozenset[int]
    keygen_towers: int
    wire_towers: int
    plaintext_bits_below: int
    source: str


# Only these layouts were measured exact (notes/openfhe-study.md §2.3, §4.1, §4.3); OpenFHE itself
# accepts many others that decrypt to garbage without an exception.
VALIDATED_LAYOUTS: tuple[Layout, ...] = (
    Layout(
        Scheme.BGV,
        NoiseMode.FIXED,
        frozenset({8192, 16384, 32768}),
        keygen_towers=1,
        wire_towers=1,
        plaintext_bits_below=33,
        source="study §4.1/§4.3: 1 tower exact to t < 2^34 with 20 decryptors",
    ),
    Layout(
        Scheme.BFV,
        NoiseMode.FLOODING,
        frozenset({16384}),
        keygen_towers=4,
        wire_towers=3,
        plaintext_bits_below=51,
        source="study §2.3: BFV flooding, 4 towers compressed to 3, exact with 5 decryptors",
    ),
    Layout(
        Scheme.BGV,
        NoiseMode.FLOODING,
        frozenset({16384}),
        keygen_towers=3,
        wire_towers=3,
        plaintext_bits_below=32,
        source="study §2.3: BGV FIXEDMANUAL flooding [58,60,60]",
    ),
)

# Largest log2(Q) per ring dimension at 128-bit classical security for ternary secrets
# (HomomorphicEncryption.org standard, the table OpenFHE enforces).
_MAX_LOG_Q_128: dict[int, int] = {
    1024: 27,
    2048: 54,
    4096: 109,
    8192: 218,
    16384: 438,
    32768: 881,
    65536: 1747,
}

_TOWER_BITS = 60


@dataclass(frozen=True)
class BgvProfile:
    """One threshold-HE crypto profile: every knob that decides correctness and security.

    Attributes:
        name: Profile name carried in configuration ("fast", "provable").
        scheme: BGV or BFV.
        noise_mode: OpenFHE multiparty decryption noise mode.
        plaintext_modulus: t, a prime with t = 1 (mod 2N) so that batching works.
        ring_dimension: N; one ciphertext carries N slots.
        keygen_towers: RNS towers of keys and fresh ciphertexts (60 bits each).
        wire_towers: Towers left after ``Compress``; what is uploaded and decrypted.
        scaling: Modulus-switching technique requested from OpenFHE.
        security_level: OpenFHE security level name.
        eval_add_count: Additions OpenFHE sizes the noise budget for, or None for its default.
        threshold_parties: Parties OpenFHE sizes the key norm for, or None for its default.
        max_summands: Uploads an aggregate may hold; fixes the packing radix.
        max_committee: Largest committee the profile must support; the self-test fuses as many
            partial decryptions as a worst-case dropout recovery of this committee produces.
    """

    name: str
    scheme: Scheme
    noise_mode: NoiseMode
    plaintext_modulus: int
    ring_dimension: int
    keygen_towers: int
    wire_towers: int
    scaling: Scaling = Scaling.FIXEDMANUAL
    security_level: str = "HEStd_128_classic"
    eval_add_count: int | None = None
    threshold_parties: int | None = None
    max_summands: int = 100
    max_committee: int = 9

    def radix(self, bits: int, max_summands: int | None = None) -> int:
        """The positional-packing radix R = max_summands * (2^bits - 1) + 1.

        A field summed over at most ``max_summands`` uploads never exceeds R - 1, so fields
        never carry into each other.
        """
        summands = self.max_summands if max_summands is None else max_summands
        if bits < 1 or summands < 1:
            raise ValueError(f"need bits >= 1 and max_summands >= 1, got {bits}, {summands}")
        return summands * ((1 << bits) - 1) + 1

    def fields_per_slot(self, bits: int, max_summands: int | None = None) -> int:
        """Largest k with R^k <= t: how many b-bit fields share one slot.

        Raises:
            ValueError: if not even one field fits (R > t).
        """
        radix = self.radix(bits, max_summands)
        fields = 0
        while radix ** (fields + 1) <= self.plaintext_modulus:
            fields += 1
        if fields == 0:
            raise ValueError(f"radix {radix} exceeds t = {self.plaintext_modulus}")
        return fields

    def wire_bytes_per_slot(self) -> float:
        """Approximate upload bytes per slot: two polynomials of 8-byte words per wire tower."""
        return 2 * 8 * self.wire_towers


def is_prime(n: int) -> bool:
    """Deterministic Miller-Rabin, exact for every n < 3.3 * 10^24."""
    if n < 2:
        return False
    bases = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for p in bases:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for a in bases:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _matching_layout(profile: BgvProfile) -> Layout | None:
    for layout in VALIDATED_LAYOUTS:
        if (
            layout.scheme is profile.scheme
            and layout.noise_mode is profile.noise_mode
            and profile.ring_dimension in layout.ring_dimensions
            and layout.keygen_towers == profile.keygen_towers
            and layout.wire_towers == profile.wire_towers
            and profile.plaintext_modulus < 1 << layout.plaintext_bits_below
        ):
            return layout
    return None


def profile_problems(profile: BgvProfile) -> list[str]:
    """Every reason the profile is known to be unsafe or silently wrong (empty if none)."""
    problems: list[str] = []
    t, n = profile.plaintext_modulus, profile.ring_dimension
    if n < 1 or n & (n - 1):
        problems.append(f"ring dimension {n} is not a power of two")
    if not is_prime(t):
        problems.append(f"plaintext modulus {t} is not prime")
    if n > 0 and t % (2 * n) != 1:
        problems.append(f"plaintext modulus {t} is not 1 mod 2N = {2 * n}: batching impossible")
    if profile.scaling in (Scaling.FLEXIBLEAUTO, Scaling.FLEXIBLEAUTOEXT):
        problems.append(
            f"{profile.scaling.value} doubles the ciphertext and Compress then silently breaks "
            "threshold decryption (study §7.1); use FIXEDMANUAL"
        )
    if profile.scheme is Scheme.BGV and profile.scaling is not Scaling.FIXEDMANUAL:
        problems.append("BGV profiles must use FIXEDMANUAL (the only validated technique)")
    if profile.keygen_towers == 1 and t >= 1 << 33:
        problems.append(
            f"t = {t} >= 2^33 on one tower: threshold decryption noise overflows silently "
            "(exact only below 2^34-2^35, study §4.1)"
        )
    if profile.scheme is Scheme.BGV and profile.keygen_towers >= 2 and t >= 1 << 32:
        problems.append(f"BGV with {profile.keygen_towers} towers and t = {t} >= 2^32 is wrong")
    if profile.scheme is Scheme.BFV and t >= 1 << 51:
        problems.append(f"BFV with t = {t} >= 2^51 decrypts wrongly even single-key")
    if profile.security_level != "HEStd_128_classic":
        problems.append(f"security level {profile.security_level} is not HEStd_128_classic")
    log_q = _TOWER_BITS * profile.keygen_towers
    if log_q > _MAX_LOG_Q_128.get(n, 0):
        problems.append(
            f"ring dimension {n} is below the 128-bit minimum for a {log_q}-bit modulus"
        )
    if profile.noise_mode is NoiseMode.FLOODING and profile.wire_towers < 3:
        problems.append("NOISE_FLOODING_MULTIPARTY needs at least 3 towers at decryption")
    if not 1 <= profile.wire_towers <= profile.keygen_towers:
        problems.append(
            f"wire towers {profile.wire_towers} not in [1, keygen towers {profile.keygen_towers}]"
        )
    if profile.max_summands < 1:
        problems.append(f"max_summands {profile.max_summands} < 1")
    if profile.max_committee < 3:
        problems.append(f"max_committee {profile.max_committee} < 3")
    if _matching_layout(profile) is None:
        problems.append(
            f"({profile.scheme.value}, {profile.noise_mode.value}, N={n}, "
            f"towers {profile.keygen_towers}->{profile.wire_towers}, t < 2^{t.bit_length()}) "
            "is not one of the validated layouts"
        )
    return problems


def check_profile(profile: BgvProfile) -> None:
    """Refuses a profile that the study lists as silently wrong or insecure.

    Raises:
        ProfileError: listing every problem found.
    """
    problems = profile_problems(profile)
    if problems:
        raise ProfileError(profile.name, problems)


FAST = BgvProfile(
    name="fast",
    scheme=Scheme.BGV,
    noise_mode=NoiseMode.FIXED,
    plaintext_modulus=1073479681,  # largest prime < 2^30 with t = 1 mod 65536
    ring_dimension=8192,
    keygen_towers=1,
    wire_towers=1,
)

FAST_16K = BgvProfile(
    name="fast-16k",
    scheme=Scheme.BGV,
    noise_mode=NoiseMode.FIXED,
    plaintext_modulus=1073479681,
    ring_dimension=16384,
    keygen_towers=1,
    wire_towers=1,
)

PROVABLE = BgvProfile(
    name="provable",
    scheme=Scheme.BFV,
    noise_mode=NoiseMode.FLOODING,
    plaintext_modulus=1125899904679937,  # largest prime < 2^50 with t = 1 mod 65536
    ring_dimension=16384,
    keygen_towers=4,
    wire_towers=3,
    scaling=Scaling.NORESCALE,
    eval_add_count=100,
    threshold_parties=5,
)

PROFILES: dict[str, BgvProfile] = {p.name: p for p in (FAST, FAST_16K, PROVABLE)}
