"""Crypto contexts: creation from a profile, BINARY (de)serialization, warm-up and layout checks."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import openfhe

from crypto.bgv import native
from crypto.bgv.errors import ProfileError
from crypto.bgv.layout import find_towers
from crypto.bgv.native import Native
from crypto.bgv.params import BgvProfile, Scheme, check_profile

_FEATURES = ("PKE", "KEYSWITCH", "LEVELEDSHE", "MULTIPARTY")
_crt_lock = threading.Lock()
_crt_disabled = False


@dataclass(frozen=True, eq=False)
class HeContext:
    """A live OpenFHE context together with the profile it was checked against.

    Attributes:
        profile: The profile this context realises.
        native: The OpenFHE ``CryptoContext`` (opaque outside crypto.bgv).
        tower_moduli: The RNS tower primes of keys and fresh ciphertexts, lowest first.
    """

    profile: BgvProfile
    native: Native
    tower_moduli: tuple[int, ...]

    @property
    def ring_dimension(self) -> int:
        """N, the number of slots per ciphertext."""
        return self.profile.ring_dimension

    @property
    def plaintext_modulus(self) -> int:
        """t; decrypted slots are integers mod t."""
        return self.profile.plaintext_modulus

    @property
    def wire_moduli(self) -> tuple[int, ...]:
        """The tower primes left on uploaded (compressed) ciphertexts."""
        return self.tower_moduli[: self.profile.wire_towers]

    def serialize(self) -> bytes:
        """The BINARY context (about 0.5-0.7 KB) that the other parties load."""
        return native.serialize(self.native)

    def compress(self, ciphertext: Native) -> Native:
        """Drops the towers a profile does not send (BFV flooding keeps 3 of 4)."""
        if self.profile.wire_towers == self.profile.keygen_towers:
            return ciphertext
        return self.native.Compress(ciphertext, self.profile.wire_towers)


def _native_params(profile: BgvProfile) -> Native:
    if profile.scheme is Scheme.BGV:
        params = openfhe.CCParamsBGVRNS()
        params.SetScalingTechnique(getattr(openfhe, profile.scaling.value))
        params.SetFirstModSize(60)
    else:
        params = openfhe.CCParamsBFVRNS()
    params.SetPlaintextModulus(profile.plaintext_modulus)
    params.SetMultiplicativeDepth(0)
    params.SetSecurityLevel(getattr(openfhe, profile.security_level))
    params.SetRingDim(profile.ring_dimension)
    params.SetMultipartyMode(getattr(openfhe, profile.noise_mode.value))
    if profile.eval_add_count is not None:
        params.SetEvalAddCount(profile.eval_add_count)
    if profile.threshold_parties is not None:
        params.SetThresholdNumOfParties(profile.threshold_parties)
    return params


def warm_up(native_context: Native) -> None:
    """Runs the first packed encode of a context on the calling thread.

    The first ``MakePackedPlaintext`` of a BGV/BFV context re-enters an OpenMP critical section
    through the PRNG and hangs forever if the thread has never used the PRNG (study §6.4). A
    ``KeyGen`` initialises this thread's PRNG first, so the warm-up is safe on any thread; after
    it, encoding on fresh threads (gRPC or executor workers) no longer hangs.
    """
    native_context.KeyGen()
    native_context.MakePackedPlaintext([0])


def _realised_moduli(profile: BgvProfile, native_context: Native) -> tuple[int, ...]:
    problems: list[str] = []
    ring = native_context.GetRingDimension()
    if ring != profile.ring_dimension:
        problems.append(
            f"OpenFHE chose ring dimension {ring}, profile says {profile.ring_dimension}"
        )
    if native_context.GetPlaintextModulus() != profile.plaintext_modulus:
        problems.append(f"context plaintext modulus {native_context.GetPlaintextModulus()}")
    keys = native_context.KeyGen()
    towers = find_towers(native.serialize(keys.publicKey), ring)
    moduli = tuple(t.modulus for t in towers[: len(towers) // 2])
    if len(towers) != 2 * profile.keygen_towers:
        problems.append(
            f"OpenFHE chose {len(towers) // 2} towers (bits {[m.bit_length() for m in moduli]}), "
            f"profile says {profile.keygen_towers}"
        )
    if any(m.bit_length() > 60 for m in moduli):
        problems.append(f"tower wider than 60 bits: {[m.bit_length() for m in moduli]}")
    if not problems:
        probe = native_context.Encrypt(keys.publicKey, native_context.MakePackedPlaintext([1]))
        if profile.wire_towers != profile.keygen_towers:
            probe = native_context.Compress(probe, profile.wire_towers)
        wire = find_towers(native.serialize(probe), ring)
        if len(wire) != 2 * profile.wire_towers:
            problems.append(f"compressed ciphertext has {len(wire) // 2} towers on the wire")
    if problems:
        raise ProfileError(profile.name, problems)
    return moduli


def create_context(profile: BgvProfile, *, check_static: bool = True) -> HeContext:
    """Builds and warms up the context of ``profile`` after the static guards.

    Args:
        profile: The profile to realise.
        check_static: Only tests turn this off, to show the empirical self-test still catches a
            bad profile.

    Raises:
        ProfileError: if the profile fails a static guard or OpenFHE realises another layout.
    """
    if check_static:
        check_profile(profile)
    native_context = openfhe.GenCryptoContext(_native_params(profile))
    for feature in _FEATURES:
        native_context.Enable(getattr(openfhe, feature))
    warm_up(native_context)
    return HeContext(profile, native_context, _realised_moduli(profile, native_context))


def load_context(
    profile: BgvProfile, blob: bytes, *, for_aggregation: bool = False, check_static: bool = True
) -> HeContext:
    """Loads a serialized context, refusing any that is not exactly ``profile``'s.

    The expected bytes are rebuilt locally from the profile (context generation is
    deterministic), so a party never runs on parameters chosen by the sender.

    Args:
        profile: The profile the caller was configured with.
        blob: BINARY context bytes received from another party.
        for_aggregation: Also disable CRT precomputation on deserialization (12x faster
            ciphertext loading); the switch is process-global and meant for the coordinator.
        check_static: See :func:`create_context`.

    Raises:
        ProfileError: if the bytes differ from the profile's context.
    """
    expected = create_context(profile, check_static=check_static)
    if blob != expected.serialize():
        raise ProfileError(profile.name, ["received context bytes differ from this profile's"])
    loaded = native.load_context(blob)
    warm_up(loaded)
    if for_aggregation:
        disable_crt_precompute()
    return HeContext(profile, loaded, expected.tower_moduli)


def disable_crt_precompute() -> None:
    """Turns off CRT-table precomputation on deserialization, process-wide, once.

    Call only once the context is live (it is, after :func:`create_context`/:func:`load_context`):
    ciphertext deserialization then drops from 1.46 to 0.12 ms at N = 8192 (study §6.2).
    """
    global _crt_disabled
    with _crt_lock:
        if not _crt_disabled:
            openfhe.DisablePrecomputeCRTTablesAfterDeserializaton()
            _crt_disabled = True
