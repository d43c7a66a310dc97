"""Signed-call metadata: how a worker proves, on every gRPC call, which enrolled key it holds.

Each call carries ``hefl-worker-id``, ``hefl-call-time`` (Unix milliseconds), ``hefl-call-nonce``
and ``hefl-call-signature-bin``: an Ed25519 signature (tag ``call``) over the full method name,
the worker id, the time and the nonce. The coordinator checks the signature against the enrolled
key, the time against a tolerance, and remembers nonces for that long, so a captured call cannot
be replayed. With mutual TLS (docs/security.md) the certificate identity must match as well.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from crypto.signing import SignatureTag, SigningKey, verify

WORKER_ID_HEADER = "hefl-worker-id"
TIME_HEADER = "hefl-call-time"
NONCE_HEADER = "hefl-call-nonce"
SIGNATURE_HEADER = "hefl-call-signature-bin"


def _signed_message(method: str, worker_id: str, time_ms: str, nonce: str) -> bytes:
    return "\n".join((method, worker_id, time_ms, nonce)).encode()


def call_metadata(key: SigningKey, method: str) -> tuple[tuple[str, str | bytes], ...]:
    """Metadata authenticating one call to ``method``.

    ``method`` is the full name, e.g. ``/hefl.v1.FederationService/CheckIn``.
    """
    time_ms = str(int(time.time() * 1000))
    nonce = secrets.token_hex(16)
    signature = key.sign(SignatureTag.CALL, _signed_message(method, key.worker_id, time_ms, nonce))
    return (
        (WORKER_ID_HEADER, key.worker_id),
        (TIME_HEADER, time_ms),
        (NONCE_HEADER, nonce),
        (SIGNATURE_HEADER, signature),
    )


@dataclass(frozen=True)
class CallClaim:
    """The identity a call claims, before verification."""

    worker_id: str
    time_ms: int
    nonce: str
    signature: bytes


class CallAuthError(Exception):
    """The call's metadata is missing, malformed, stale or does not verify."""


def parse_claim(metadata: dict[str, str | bytes]) -> CallClaim:
    """Extracts the claim from invocation metadata.

    Raises:
        CallAuthError: if a header is missing or malformed.
    """
    try:
        worker_id = metadata[WORKER_ID_HEADER]
        time_ms = metadata[TIME_HEADER]
        nonce = metadata[NONCE_HEADER]
        signature = metadata[SIGNATURE_HEADER]
    except KeyError as missing:
        raise CallAuthError(f"missing call-authentication header {missing}") from None
    if not isinstance(worker_id, str) or not isinstance(nonce, str):
        raise CallAuthError("call-authentication headers must be text")
    if not isinstance(signature, bytes):
        raise CallAuthError("call signature must be a binary header")
    if not isinstance(time_ms, str) or not time_ms.isdigit() or len(time_ms) > 16:
        raise CallAuthError(f"bad {TIME_HEADER}: Unix milliseconds expected")
    when = int(time_ms)
    if not 8 <= len(nonce) <= 64:
        raise CallAuthError("call nonce must be 8 to 64 characters")
    return CallClaim(worker_id, when, nonce, signature)


def verify_claim(claim: CallClaim, method: str, public_key: bytes) -> bool:
    """Checks the claim's signature for ``method`` against the enrolled key."""
    message = _signed_message(method, claim.worker_id, str(claim.time_ms), claim.nonce)
    return verify(public_key, SignatureTag.CALL, message, claim.signature)
