"""Domain errors of the coordinator, each carrying the gRPC status it maps to.

Domain code raises these; the servicers are the single place that turns them into gRPC
statuses, so a person reading a failed call sees an actionable message and the right code.
"""

from __future__ import annotations

import grpc


class CoordinatorError(Exception):
    """Base class: a request was refused; nothing accepted before it was changed."""

    code = grpc.StatusCode.INTERNAL


class InvalidRequestError(CoordinatorError):
    """Malformed input: missing fields, UNSPECIFIED enums, bad framing."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class WrongPhaseError(CoordinatorError):
    """Right request at the wrong time: wrong round, closed window, task not open."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class NotFoundError(CoordinatorError):
    """The named task, round, version or federation does not exist."""

    code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(CoordinatorError):
    """A replay: the upload was already accepted."""

    code = grpc.StatusCode.ALREADY_EXISTS


class DigestMismatchError(CoordinatorError):
    """The bytes received do not hash to the announced digest."""

    code = grpc.StatusCode.DATA_LOSS


class LimitExceededError(CoordinatorError):
    """A size or rate limit was hit."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnauthenticatedError(CoordinatorError):
    """The caller could not be identified (unknown worker, bad or stale call signature)."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(CoordinatorError):
    """The caller is known but may not do this (not its task, not a committee member)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class UnavailableError(CoordinatorError):
    """The coordinator is draining or not ready; retry later."""

    code = grpc.StatusCode.UNAVAILABLE
