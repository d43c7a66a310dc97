"""What a committee member agrees to do, decided against its durable log.

The member answers each task only after the decision is committed to its :class:`MemberLog`:

- commit/reveal: one contribution per round, revealed only against a commitment set that holds
  its own commitment and at least ``threshold`` members, and against one such set only;
- sign a descriptor: the checks of :mod:`crypto.committee.descriptor`, one descriptor per round,
  rounds strictly increasing;
- certify a set: a valid set (:func:`verify_contributor_set`) for a descriptor it signed, and no
  other set in that round;
- open: the same, plus a quorum certificate on this exact set; a repeated request returns the
  recorded result, never a second, differently noised one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from crypto.committee.certificate import sign_contributor_set, verify_certificate
from crypto.committee.contributions import VerifiedContributorSet, verify_contributor_set
from crypto.committee.descriptor import (
    MAX_ROUND_NUMBER,
    MIN_CONTRIBUTORS_FLOOR,
    check_descriptor,
    check_descriptor_for_member,
    check_signing_order,
    sign_descriptor,
    verify_signed_descriptor,
)
from crypto.committee.digests import sha256, tagged_sha256
from crypto.committee.enrollment import EnrollmentVerifier
from crypto.committee.errors import (
    BAD_TRANSCRIPT,
    CONFLICT,
    MALFORMED,
    CommitteeError,
    MemberLogError,
    RefusalError,
)
from crypto.committee.member_log import LogTransaction, MemberLog, RoundRecord
from crypto.committee.roster import Roster
from crypto.committee.transcript import (
    check_commitments,
    commitment_for,
    commitments_sha256,
    make_commitment,
    new_contribution,
)
from crypto.signing import SigningKey
from hefl.v1 import common_pb2

OpenFunction = Callable[[VerifiedContributorSet], bytes]


class MemberPolicy:
    """A committee member's decisions for one key epoch, backed by its durable log."""

    def __init__(
        self,
        *,
        log: MemberLog,
        signing_key: SigningKey,
        roster: Roster,
        enrollment_verifier: EnrollmentVerifier,
        min_contributors_floor: int,
        reproducible_seed: bytes = b"",
    ) -> None:
        """Creates the policy of the member holding ``signing_key`` in ``roster``.

        Args:
            log: The member's durable log; shared by every epoch of the member.
            signing_key: The member's signing key.
            roster: The verified roster of the epoch (the one the member signed).
            enrollment_verifier: Decides which contributor credentials are enrolled.
            min_contributors_floor: Fewest contributors this member ever helps open, whatever
                a descriptor says; at least 2.
            reproducible_seed: Test runs only: derive the seed contributions from this secret
                instead of the CSPRNG, so a whole run can be repeated bit for bit (crash tests).
                A member in this mode refuses to sign any descriptor with DP.

        Raises:
            CommitteeError: if the key is not in the roster or the floor is below 2.
        """
        index = roster.index_of(signing_key.public_bytes)
        if index is None:
            raise CommitteeError("this signing key is not a member of the roster")
        if min_contributors_floor < MIN_CONTRIBUTORS_FLOOR:
            raise CommitteeError(f"the contributor floor must be at least {MIN_CONTRIBUTORS_FLOOR}")
        self._log = log
        self._key = signing_key
        self._roster = roster
        self._index = index
        self._verifier = enrollment_verifier
        self._floor = min_contributors_floor
        self._reproducible_seed = reproducible_seed

    @property
    def member_index(self) -> int:
        """This member's index in the roster."""
        return self._index

    @property
    def roster(self) -> Roster:
        """The roster of the epoch this policy serves."""
        return self._roster

    def commit_seed(self, round_number: int) -> common_pb2.SeedCommitment:
        """Answers CommitSeedTask: commits to this round's contribution (drawn once, then kept).

        Raises:
            RefusalError: CONFLICT if the member already signed a descriptor for this or a
                later round, MALFORMED for a round number out of range.
        """
        _check_round_number(round_number)
        federation = self._roster.federation_id
        with self._log.transaction() as log:
            record = log.get(federation, round_number)
            contribution = record.seed_contribution
            if contribution is None:
                highest = log.highest_signed_round(federation)
                if highest is not None and round_number <= highest:
                    raise RefusalError(
                        CONFLICT, f"round {round_number} is not above signed round {highest}"
                    )
                contribution = (
                    tagged_sha256(
                        "reproducible-seed", self._reproducible_seed, federation, round_number
                    )
                    if self._reproducible_seed
                    else new_contribution()
                )
                log.put(replace(record, seed_contribution=contribution))
        return make_commitment(federation, round_number, self._index, contribution)

    def reveal_seed(
        self, round_number: int, commitments: Sequence[common_pb2.SeedCommitment]
    ) -> common_pb2.SeedReveal:
        """Answers RevealSeedTask once the commitment set is fixed; reveals against one set only.

        Raises:
            RefusalError: BAD_TRANSCRIPT if the set is invalid or lacks this member's
                commitment, CONFLICT if the member revealed against another set.
        """
        _check_round_number(round_number)
        check_commitments(commitments, self._roster.signing_keys.keys(), self._roster.threshold)
        federation = self._roster.federation_id
        digest = commitments_sha256(commitments)
        with self._log.transaction() as log:
            record = log.get(federation, round_number)
            contribution = record.seed_contribution
            if contribution is None:
                raise RefusalError(BAD_TRANSCRIPT, "this member did not commit in this round")
            own = [c for c in commitments if c.member_index == self._index]
            expected = commitment_for(federation, round_number, self._index, contribution)
            if len(own) != 1 or own[0].commitment != expected:
                raise RefusalError(BAD_TRANSCRIPT, "the set lacks this member's commitment")
            if record.revealed_commitments_sha256 not in (None, digest):
                raise RefusalError(CONFLICT, "this member revealed against another set")
            log.put(replace(record, revealed_commitments_sha256=digest))
        return common_pb2.SeedReveal(member_index=self._index, contribution=contribution)

    def sign_descriptor(self, descriptor_bytes: bytes) -> common_pb2.MemberSignature:
        """Answers SignDescriptorTask after every check in :mod:`crypto.committee.descriptor`.

        Raises:
            RefusalError: CONFLICT for a round already signed with other bytes or below one
                signed before; BAD_TRANSCRIPT or MALFORMED as the descriptor checks.
        """
        descriptor = check_descriptor(descriptor_bytes, self._roster)
        if self._reproducible_seed and descriptor.message.dp.enabled:
            raise RefusalError(MALFORMED, "a reproducible test member does not take part in DP")
        federation = self._roster.federation_id
        with self._log.transaction() as log:
            record = log.get(federation, descriptor.message.round_number)
            check_signing_order(
                descriptor,
                highest_signed_round=log.highest_signed_round(federation),
                digest_signed_for_round=record.descriptor_sha256,
            )
            if record.seed_contribution is None or record.revealed_commitments_sha256 is None:
                raise RefusalError(BAD_TRANSCRIPT, "this member did not reveal in this round")
            check_descriptor_for_member(
                descriptor,
                member_index=self._index,
                own_contribution=record.seed_contribution,
                revealed_commitments_sha256=record.revealed_commitments_sha256,
                min_contributors_floor=self._floor,
            )
            log.put(replace(record, descriptor_sha256=descriptor.sha256))
        return sign_descriptor(self._key, self._index, descriptor)

    def certify(
        self, contributor_set: bytes, descriptor: common_pb2.SignedRoundDescriptor
    ) -> common_pb2.MemberSignature:
        """Answers CertifyContributorSetTask: signs the set's digest if the set checks out.

        Certifying the same set again returns the same signature.

        Raises:
            RefusalError: CONFLICT if the member signed another descriptor, or signed or
                opened another set, in this round; otherwise as :func:`verify_contributor_set`.
        """
        with self._log.transaction() as log:
            verified, record = self._verify_set(log, contributor_set, descriptor)
            _check_not_bound_elsewhere(record, verified)
            if record.certified_set_sha256 is None:
                log.put(replace(record, certified_set_sha256=verified.sha256))
        return sign_contributor_set(self._key, self._index, verified.sha256)

    def open(
        self,
        contributor_set: bytes,
        certificate: common_pb2.QuorumCertificate,
        descriptor: common_pb2.SignedRoundDescriptor,
        compute: OpenFunction,
    ) -> bytes:
        """Answers OpenAggregateTask: returns this member's opening of a certified set.

        ``compute`` gets the verified set and returns the result bytes (for oneshot, the
        serialized KeyShareOpening). It runs at most once per round: the result is committed to
        the log before it is returned, and a repeated request returns the stored bytes. It runs
        inside the log transaction, so it must not call back into this policy; it may raise
        (for example a RefusalError with AGGREGATE_MISMATCH), which records nothing.

        Raises:
            RefusalError: NO_QUORUM without a quorum certificate on this exact set, CONFLICT
                if the member signed or opened another set in this round, otherwise as
                :meth:`certify`.
        """
        with self._log.transaction() as log:
            verified, record = self._verify_set(log, contributor_set, descriptor)
            verify_certificate(
                certificate, contributor_set_sha256=verified.sha256, roster=self._roster
            )
            _check_not_bound_elsewhere(record, verified)
            if record.opened_set_sha256 is not None:
                if record.result is None:
                    raise MemberLogError("an opened round has no recorded result")
                return record.result
            result = compute(verified)
            log.put(
                replace(
                    record,
                    opened_set_sha256=verified.sha256,
                    result_sha256=sha256(result),
                    result=result,
                )
            )
            return result

    def _verify_set(
        self,
        log: LogTransaction,
        contributor_set: bytes,
        signed_descriptor: common_pb2.SignedRoundDescriptor,
    ) -> tuple[VerifiedContributorSet, RoundRecord]:
        descriptor = verify_signed_descriptor(signed_descriptor, self._roster)
        round_number = descriptor.message.round_number
        record = log.get(self._roster.federation_id, round_number)
        if record.descriptor_sha256 is None:
            raise RefusalError(
                MALFORMED, f"this member signed no descriptor in round {round_number}"
            )
        if record.descriptor_sha256 != descriptor.sha256:
            raise RefusalError(CONFLICT, f"another descriptor was signed in round {round_number}")
        verified = verify_contributor_set(
            contributor_set,
            descriptor=descriptor,
            enrollment_verifier=self._verifier,
            min_contributors=max(self._floor, descriptor.message.min_contributors),
        )
        return verified, record


def _check_round_number(round_number: int) -> None:
    if not 1 <= round_number <= MAX_ROUND_NUMBER:
        raise RefusalError(MALFORMED, f"round number {round_number} is out of range")


def _check_not_bound_elsewhere(record: RoundRecord, verified: VerifiedContributorSet) -> None:
    bound = record.committed_set()
    if bound is not None and bound != verified.sha256:
        raise RefusalError(
            CONFLICT, f"this member already signed another set in round {record.round_number}"
        )
