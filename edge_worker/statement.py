"""Builds the upload trailer: payload digest, the signed statement and the sealed shares."""

from __future__ import annotations

from crypto.committee.contributions import sealed_boxes_sha256
from crypto.signing import SignatureTag, SigningKey
from edge_worker.encoders import EncodedUpload
from edge_worker.transfer import file_sha256
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2 as fed


def build_trailer(
    key: SigningKey,
    descriptor: common.RoundDescriptor,
    descriptor_sha256: bytes,
    profile: int,
    encoded: EncodedUpload,
) -> fed.UploadTrailer:
    """The last frame of an upload, signed with the device's enrolment key."""
    digest = file_sha256(encoded.payload_path)
    statement = common.UploadStatement(
        federation_id=descriptor.federation_id,
        round_number=descriptor.round_number,
        worker_id=key.worker_id,
        descriptor_sha256=descriptor_sha256,
        profile=profile,  # type: ignore[arg-type]
        payload_format_version=encoded.payload_format_version,
        payload_size_bytes=encoded.payload_path.stat().st_size,
        payload_sha256=digest,
        sealed_shares_sha256=sealed_boxes_sha256(encoded.sealed_shares),
    ).SerializeToString()
    return fed.UploadTrailer(
        payload_sha256=digest,
        statement=common.SignedUploadStatement(
            statement=statement, signature=key.sign(SignatureTag.UPLOAD_STATEMENT, statement)
        ),
        sealed_shares=encoded.sealed_shares,
    )


def trailer_format_version(trailer: fed.UploadTrailer) -> int:
    """The payload format version a stored trailer's statement names."""
    return common.UploadStatement.FromString(trailer.statement.statement).payload_format_version
