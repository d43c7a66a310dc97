"""Exceptions of the committee protocol: typed refusals and local failures."""

from __future__ import annotations

from typing import TypeAlias

from hefl.v1 import committee_service_pb2

RefusalCode: TypeAlias = committee_service_pb2.RefusalCode.ValueType


class CommitteeError(Exception):
    """Base class of every committee error; also raised for misuse by the local caller."""


class RefusalError(CommitteeError):
    """A message from another party failed a check; carries the wire refusal code.

    Members answer a task that raises this with a ``hefl.v1.Refusal`` built by
    :meth:`to_proto`. Workers and the coordinator raise it too when a committee message they
    received does not verify.
    """

    def __init__(self, code: RefusalCode, detail: str) -> None:
        super().__init__(f"{committee_service_pb2.RefusalCode.Name(code)}: {detail}")
        self.code = code
        self.detail = detail

    def to_proto(self) -> committee_service_pb2.Refusal:
        """Returns the refusal as the member sends it to the coordinator."""
        return committee_service_pb2.Refusal(code=self.code, detail=self.detail)


class MemberLogError(CommitteeError):
    """The member's durable log is unreadable, from another schema, or was tampered with."""


BAD_SIGNATURE = committee_service_pb2.REFUSAL_CODE_BAD_SIGNATURE
CONFLICT = committee_service_pb2.REFUSAL_CODE_CONFLICT
TOO_FEW_CONTRIBUTORS = committee_service_pb2.REFUSAL_CODE_TOO_FEW_CONTRIBUTORS
BAD_CONTRIBUTION = committee_service_pb2.REFUSAL_CODE_BAD_CONTRIBUTION
NO_QUORUM = committee_service_pb2.REFUSAL_CODE_NO_QUORUM
BAD_TRANSCRIPT = committee_service_pb2.REFUSAL_CODE_BAD_TRANSCRIPT
AGGREGATE_MISMATCH = committee_service_pb2.REFUSAL_CODE_AGGREGATE_MISMATCH
MALFORMED = committee_service_pb2.REFUSAL_CODE_MALFORMED
