"""Streams model payloads (full model or correction chain), resumable from any offset."""

from __future__ import annotations

from collections.abc import AsyncIterator

from coordinator.errors import InvalidRequestError, WrongPhaseError
from coordinator.metrics import CoordinatorMetrics
from coordinator.models import ModelRegistry
from crypto import model_payload
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2 as fed

_KINDS = {
    "full": fed.MODEL_PAYLOAD_KIND_FULL,
    "chain": fed.MODEL_PAYLOAD_KIND_CORRECTION_CHAIN,
}


class ModelDownloads:
    """Answers DownloadModel requests from the model registry."""

    def __init__(self, models: ModelRegistry, metrics: CoordinatorMetrics, chunk_size: int) -> None:
        """Serves chunks of ``chunk_size`` bytes."""
        self._models = models
        self._metrics = metrics
        self._chunk_size = chunk_size

    def plan(self, request: fed.DownloadModelRequest) -> tuple[fed.ModelHeader, bytes]:
        """Chooses the payload and checks the resume point before anything is streamed.

        Raises:
            NotFoundError: unknown version.
            WrongPhaseError: the payload changed since the device started it.
            InvalidRequestError: an offset beyond the payload.
        """
        payload = self._models.payload_for(request.have_version, request.want_version)
        if request.offset_bytes and request.expected_sha256 != payload.sha256:
            raise WrongPhaseError(
                "the payload being resumed is no longer served (its digest changed);"
                " restart the download from offset 0"
            )
        if request.offset_bytes > len(payload.data):
            raise InvalidRequestError(
                f"offset {request.offset_bytes} is beyond the payload size {len(payload.data)}"
            )
        header = fed.ModelHeader(
            kind=_KINDS[payload.kind],  # type: ignore[arg-type]
            from_version=payload.from_version,
            to_version=payload.to_version,
            total_size_bytes=len(payload.data),
            payload_sha256=payload.sha256,
            payload_format_version=model_payload.FORMAT_VERSION,
        )
        return header, payload.data

    async def stream(
        self, header: fed.ModelHeader, data: bytes, offset: int
    ) -> AsyncIterator[fed.DownloadModelResponse]:
        """Header, chunks from ``offset``, trailer."""
        yield fed.DownloadModelResponse(header=header)
        for start in range(offset, len(data), self._chunk_size):
            piece = data[start : start + self._chunk_size]
            self._metrics.bytes_sent.labels("model").inc(len(piece))
            yield fed.DownloadModelResponse(chunk=common.Chunk(offset_bytes=start, data=piece))
        yield fed.DownloadModelResponse(
            trailer=fed.ModelTrailer(payload_sha256=header.payload_sha256)
        )
