"""The round a mask is made for, taken only from the committee-signed round descriptor bytes."""

from __future__ import annotations

import hashlib

from google.protobuf.message import DecodeError

from crypto.oneshot.params import OneshotParams, ParameterError, SumMode
from hefl.v1 import common_pb2

SEED_BYTES = 32


class BindingError(ValueError):
    """The descriptor bytes are malformed or are not for a oneshot round."""


class RoundBinding:
    """Federation, round and descriptor digest of one oneshot round.

    The only constructor takes the serialized ``hefl.v1.RoundDescriptor`` whose committee
    signatures the caller has verified. The public polynomials a_j are expanded from its SHA-256,
    so there is no way to hand the masking code a polynomial or a seed chosen by the coordinator.
    """

    __slots__ = ("_descriptor", "_digest")

    def __init__(self, descriptor: bytes) -> None:
        """Parses the verified descriptor bytes.

        Raises:
            BindingError: if the bytes do not parse, name no federation, carry no 32-byte seed,
                or are not for the oneshot profile.
        """
        try:
            parsed = common_pb2.RoundDescriptor.FromString(descriptor)
        except DecodeError as error:
            raise BindingError(f"round descriptor does not parse: {error}") from error
        if not parsed.federation_id:
            raise BindingError("round descriptor names no federation")
        if len(parsed.seed) != SEED_BYTES:
            raise BindingError(f"round seed must be {SEED_BYTES} bytes, got {len(parsed.seed)}")
        if parsed.profile != common_pb2.CRYPTO_PROFILE_ONESHOT:
            raise BindingError("round descriptor is not for the oneshot profile")
        self._descriptor = parsed
        self._digest = hashlib.sha256(descriptor).digest()

    @property
    def federation_id(self) -> str:
        """Federation of the round."""
        return str(self._descriptor.federation_id)

    @property
    def round_number(self) -> int:
        """Round number within the federation."""
        return int(self._descriptor.round_number)

    @property
    def descriptor_sha256(self) -> bytes:
        """SHA-256 of the descriptor bytes: the root of every public polynomial of the round."""
        return self._digest

    def __repr__(self) -> str:
        return (
            f"RoundBinding({self.federation_id!r}, round {self.round_number}, "
            f"{self.descriptor_sha256.hex()[:16]}...)"
        )

    @property
    def parameter_count(self) -> int:
        """Number of model parameters D the round's updates carry."""
        return int(self._descriptor.codec.parameter_count)

    def params(self, *, allow_approx: bool = False) -> OneshotParams:
        """The oneshot parameters the descriptor fixes, checked for consistency.

        Args:
            allow_approx: The caller's explicit opt-in to the approximate mode.

        Raises:
            ParameterError: if the fields are inconsistent or fail :func:`check_params`.
        """
        codec = self._descriptor.codec
        fields = codec.oneshot
        try:
            mode = SumMode(codec.sum_mode)
        except ValueError as error:
            raise ParameterError(f"unknown sum mode {codec.sum_mode}") from error
        params = OneshotParams(
            mode=mode,
            bits=codec.bits,
            max_summands=codec.max_summands,
            shift_bits=fields.message_shift_bits,
            modulus_bits=fields.modulus_bits,
            ring_dimension=fields.ring_dimension,
            secret_stddev=fields.secret_stddev,
            error_stddev=fields.error_stddev,
            allow_approx=allow_approx,
        )
        derived = (params.rounded_modulus_bits, params.sum_bits, params.share_field_modulus)
        stated = (fields.rounded_modulus_bits, fields.sum_bits, fields.share_field_modulus)
        if derived != stated:
            raise ParameterError(
                f"descriptor states (q' bits, sum bits, share field) = {stated}, "
                f"the parameters imply {derived}"
            )
        return params


def params_to_proto(params: OneshotParams) -> common_pb2.OneshotParams:
    """The ``hefl.v1.OneshotParams`` message describing ``params`` (for round descriptors)."""
    return common_pb2.OneshotParams(
        ring_dimension=params.ring_dimension,
        modulus_bits=params.modulus_bits,
        rounded_modulus_bits=params.rounded_modulus_bits,
        message_shift_bits=params.shift_bits,
        sum_bits=params.sum_bits,
        secret_stddev=params.secret_stddev,
        error_stddev=params.error_stddev,
        share_field_modulus=params.share_field_modulus,
    )
