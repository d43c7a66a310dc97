"""Seed commit-reveal: the round seed no single party, the coordinator included, can choose.

Each member draws a fresh 32-byte contribution, publishes a commitment to it, and reveals it
only once every commitment is fixed. The seed hashes all reveals, so it is uniform as long as one
contributing member is honest. Encodings (see :mod:`crypto.committee.digests`):

- commitment = tagged_sha256("seed-commitment", federation, round, member index, contribution)
- seed = tagged_sha256("round-seed", federation, round, n, pairs), where pairs is the
  concatenation of encode(index_i, contribution_i) over the n reveals sorted by member index.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence

from crypto.committee.digests import DIGEST_BYTES, encode, tagged_sha256
from crypto.committee.errors import BAD_TRANSCRIPT, RefusalError
from hefl.v1 import common_pb2

CONTRIBUTION_BYTES = 32


def new_contribution() -> bytes:
    """Draws a fresh seed contribution from the operating system's CSPRNG."""
    return os.urandom(CONTRIBUTION_BYTES)


def commitment_for(
    federation_id: str, round_number: int, member_index: int, contribution: bytes
) -> bytes:
    """Returns the commitment to ``contribution`` for one member in one round."""
    return tagged_sha256("seed-commitment", federation_id, round_number, member_index, contribution)


def make_commitment(
    federation_id: str, round_number: int, member_index: int, contribution: bytes
) -> common_pb2.SeedCommitment:
    """Builds the SeedCommitment message a member sends in answer to CommitSeedTask."""
    return common_pb2.SeedCommitment(
        member_index=member_index,
        commitment=commitment_for(federation_id, round_number, member_index, contribution),
    )


def derive_seed(
    federation_id: str, round_number: int, reveals: Sequence[common_pb2.SeedReveal]
) -> bytes:
    """Hashes the reveals, sorted by member index, into the round seed."""
    ordered = sorted(reveals, key=lambda reveal: reveal.member_index)
    pairs = b"".join(encode(r.member_index, r.contribution) for r in ordered)
    return tagged_sha256("round-seed", federation_id, round_number, len(ordered), pairs)


def commitments_sha256(commitments: Sequence[common_pb2.SeedCommitment]) -> bytes:
    """Digest of a commitment set, independent of order; members log it when they reveal."""
    ordered = sorted(commitments, key=lambda commitment: commitment.member_index)
    pairs = b"".join(encode(c.member_index, c.commitment) for c in ordered)
    return tagged_sha256("seed-commitments", len(ordered), pairs)


def check_commitments(
    commitments: Sequence[common_pb2.SeedCommitment],
    roster_indices: Collection[int],
    threshold: int,
) -> None:
    """Checks a commitment set: distinct roster members, well-formed, at least ``threshold``.

    Raises:
        RefusalError: BAD_TRANSCRIPT if any check fails.
    """
    indices = [c.member_index for c in commitments]
    if len(set(indices)) != len(indices):
        raise RefusalError(BAD_TRANSCRIPT, "a member has two seed commitments")
    if not set(indices) <= set(roster_indices):
        raise RefusalError(BAD_TRANSCRIPT, "a seed commitment is from a non-member")
    if any(len(c.commitment) != DIGEST_BYTES for c in commitments):
        raise RefusalError(BAD_TRANSCRIPT, "a seed commitment is not 32 bytes")
    if len(indices) < threshold:
        raise RefusalError(
            BAD_TRANSCRIPT, f"{len(indices)} seed commitments, the threshold is {threshold}"
        )


def verify_transcript(
    descriptor: common_pb2.RoundDescriptor,
    roster_indices: Collection[int],
    threshold: int,
) -> None:
    """Checks the seed transcript of a round descriptor.

    Every commitment has exactly one matching reveal and every reveal a commitment (so whoever
    assembles the descriptor cannot choose a seed by leaving out reveals it dislikes), the
    members are distinct roster members, there are at least ``threshold`` of them, and the seed
    recomputes from the reveals.

    Raises:
        RefusalError: BAD_TRANSCRIPT if any check fails.
    """
    commitments = list(descriptor.seed_commitments)
    reveals = list(descriptor.seed_reveals)
    check_commitments(commitments, roster_indices, threshold)
    committed = {c.member_index: c.commitment for c in commitments}
    revealed = [r.member_index for r in reveals]
    if len(set(revealed)) != len(revealed) or set(revealed) != set(committed):
        raise RefusalError(BAD_TRANSCRIPT, "the reveals do not match the commitments one to one")
    for reveal in reveals:
        if len(reveal.contribution) != CONTRIBUTION_BYTES:
            raise RefusalError(BAD_TRANSCRIPT, "a seed contribution is not 32 bytes")
        expected = commitment_for(
            descriptor.federation_id,
            descriptor.round_number,
            reveal.member_index,
            reveal.contribution,
        )
        if expected != committed[reveal.member_index]:
            raise RefusalError(
                BAD_TRANSCRIPT,
                f"member {reveal.member_index}'s reveal does not match its commitment",
            )
    if descriptor.seed != derive_seed(descriptor.federation_id, descriptor.round_number, reveals):
        raise RefusalError(BAD_TRANSCRIPT, "the seed is not derived from the reveals")
