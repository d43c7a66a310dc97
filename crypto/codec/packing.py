"""Positional packing of several b-bit fields into one plaintext slot, with headroom for sums.

With radix R = n_max*(2^b - 1) + 1 a slot holds k fields as sum_j q_j R^j. The sum of up to n_max
packed slots keeps every field digit at most R - 1, so digits never carry into each other, and
as long as R^k <= t the slot never wraps mod the plaintext modulus t either.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

# Slot values are handled as int64; t < 2^62 keeps sums of two reduced slots representable.
MAX_PLAINTEXT_MODULUS = 1 << 62


def packing_radix(bits: int, max_summands: int) -> int:
    """R = n_max*(2^b - 1) + 1: one more than the largest possible sum of n_max fields."""
    if bits < 1 or max_summands < 1:
        raise ValueError(f"need bits >= 1 and max_summands >= 1, got {bits}, {max_summands}")
    return max_summands * ((1 << bits) - 1) + 1


def fields_per_slot(bits: int, max_summands: int, plaintext_modulus: int) -> int:
    """The largest k with R^k <= t: how many b-bit fields share one slot.

    Args:
        bits: Field width b.
        max_summands: Largest number of packed vectors that will be summed, n_max.
        plaintext_modulus: The scheme's plaintext modulus t.

    Returns:
        k >= 1.

    Raises:
        ValueError: If not even one field fits (R > t) or t is out of range.
    """
    if not 2 <= plaintext_modulus <= MAX_PLAINTEXT_MODULUS:
        raise ValueError(f"plaintext modulus must be in [2, 2^62], got {plaintext_modulus}")
    radix = packing_radix(bits, max_summands)
    per_slot = 0
    capacity = 1
    while capacity * radix <= plaintext_modulus:
        capacity *= radix
        per_slot += 1
    if per_slot == 0:
        raise ValueError(
            f"a sum of {max_summands} {bits}-bit fields needs radix {radix}, "
            f"above the plaintext modulus {plaintext_modulus}"
        )
    return per_slot


def slots_needed(num_fields: int, per_slot: int) -> int:
    """Number of slots for ``num_fields`` fields at ``per_slot`` fields per slot."""
    if num_fields < 0 or per_slot < 1:
        raise ValueError(f"need num_fields >= 0 and per_slot >= 1, got {num_fields}, {per_slot}")
    return -(-num_fields // per_slot)


def _radix_powers(bits: int, max_summands: int, plaintext_modulus: int) -> IntArray:
    per_slot = fields_per_slot(bits, max_summands, plaintext_modulus)
    radix = packing_radix(bits, max_summands)
    return np.array([radix**j for j in range(per_slot)], dtype=np.int64)


def pack_fields(
    fields: npt.NDArray[np.integer], *, bits: int, max_summands: int, plaintext_modulus: int
) -> IntArray:
    """Packs b-bit fields into slots: field i goes to slot i // k, digit i % k.

    The last slot is completed with zero fields.

    Args:
        fields: Unsigned fields in [0, 2^b).
        bits: Field width b.
        max_summands: n_max, which fixes the radix.
        plaintext_modulus: t, which fixes k together with the radix.

    Returns:
        int64 slots in [0, R^k) (hence in [0, t)).
    """
    powers = _radix_powers(bits, max_summands, plaintext_modulus)
    values = np.asarray(fields).reshape(-1)
    if values.size and (int(values.min()) < 0 or int(values.max()) >= 1 << bits):
        raise ValueError(f"fields must lie in [0, 2^{bits})")
    per_slot = powers.size
    digits = np.zeros(slots_needed(values.size, per_slot) * per_slot, dtype=np.int64)
    digits[: values.size] = values
    packed: IntArray = digits.reshape(-1, per_slot) @ powers
    return packed


def unpack_slots(
    slots: npt.NDArray[np.integer],
    *,
    num_fields: int,
    bits: int,
    max_summands: int,
    plaintext_modulus: int,
) -> IntArray:
    """Recovers per-field sums from a (summed) slot vector.

    Args:
        slots: Slot values mod t, in any representative (OpenFHE decodes to centred values).
        num_fields: Number of fields that were packed (drops the zero completion).
        bits: Field width b.
        max_summands: n_max used when packing.
        plaintext_modulus: t.

    Returns:
        int64 field sums, each in [0, R).
    """
    powers = _radix_powers(bits, max_summands, plaintext_modulus)
    radix = packing_radix(bits, max_summands)
    per_slot = powers.size
    values = np.asarray(slots, dtype=np.int64).reshape(-1)
    if num_fields < 0 or num_fields > values.size * per_slot:
        raise ValueError(f"{values.size} slots cannot hold {num_fields} fields")
    reduced = np.mod(values, plaintext_modulus)
    digits = (reduced[:, None] // powers[None, :]) % radix
    unpacked: IntArray = digits.reshape(-1)[:num_fields]
    return unpacked
