"""The committee protocol: seeds, rosters, descriptors, contributor sets, certificates, policy.

Pure logic over the ``hefl.v1`` messages plus the member's durable log; no networking. The
coordinator, workers and key holders all use it; docs/committee.md describes the protocol.
"""

from __future__ import annotations

from crypto.committee.certificate import (
    build_certificate,
    sign_contributor_set,
    verify_certificate,
)
from crypto.committee.contributions import (
    VerifiedContributorSet,
    build_contributor_set,
    build_upload_statement,
    sign_upload_statement,
    verify_contributor_set,
    verify_upload_statement,
)
from crypto.committee.descriptor import (
    VerifiedDescriptor,
    build_descriptor,
    check_descriptor,
    check_descriptor_for_member,
    check_signing_order,
    sign_descriptor,
    verify_signed_descriptor,
)
from crypto.committee.digests import (
    contributor_set_message,
    encode,
    joint_public_key_message,
    sealing_key_message,
    sha256,
    tagged_sha256,
)
from crypto.committee.enrollment import (
    EnrollmentVerifier,
    SelfCertifyingVerifier,
    X509EnrollmentVerifier,
    credential_of,
)
from crypto.committee.errors import CommitteeError, MemberLogError, RefusalError
from crypto.committee.joint_key import sign_joint_public_key, verify_joint_public_key
from crypto.committee.member_log import MemberLog, RoundRecord
from crypto.committee.member_policy import MemberPolicy
from crypto.committee.roster import (
    Roster,
    build_roster,
    certificate_quorum,
    check_roster,
    join_epoch,
    load_roster,
    majority,
    member_entry,
    sign_roster,
    verify_signed_roster,
)
from crypto.committee.signatures import keep_valid, sign_as_member, valid_signers
from crypto.committee.transcript import (
    commitment_for,
    derive_seed,
    make_commitment,
    new_contribution,
    verify_transcript,
)

__all__ = [
    "CommitteeError",
    "RefusalError",
    "EnrollmentVerifier",
    "MemberLog",
    "MemberLogError",
    "MemberPolicy",
    "Roster",
    "RoundRecord",
    "SelfCertifyingVerifier",
    "VerifiedContributorSet",
    "VerifiedDescriptor",
    "X509EnrollmentVerifier",
    "build_certificate",
    "build_contributor_set",
    "build_descriptor",
    "build_roster",
    "build_upload_statement",
    "certificate_quorum",
    "check_descriptor",
    "check_descriptor_for_member",
    "check_roster",
    "check_signing_order",
    "commitment_for",
    "contributor_set_message",
    "credential_of",
    "derive_seed",
    "encode",
    "join_epoch",
    "joint_public_key_message",
    "keep_valid",
    "load_roster",
    "majority",
    "make_commitment",
    "member_entry",
    "new_contribution",
    "sealing_key_message",
    "sha256",
    "sign_as_member",
    "sign_contributor_set",
    "sign_descriptor",
    "sign_joint_public_key",
    "sign_roster",
    "sign_upload_statement",
    "tagged_sha256",
    "valid_signers",
    "verify_certificate",
    "verify_contributor_set",
    "verify_joint_public_key",
    "verify_signed_descriptor",
    "verify_signed_roster",
    "verify_transcript",
    "verify_upload_statement",
]
