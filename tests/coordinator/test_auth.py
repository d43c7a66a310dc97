"""Signed-call verification: identity, clock tolerance, replays."""

from __future__ import annotations

import time

import pytest

from coordinator.auth import CallAuthenticator
from coordinator.errors import UnauthenticatedError
from coordinator.store import WorkerRow
from crypto.call_auth import call_metadata
from crypto.signing import SigningKey

METHOD = "/hefl.v1.FederationService/CheckIn"


def _row(key: SigningKey) -> WorkerRow:
    return WorkerRow(key.worker_id, key.public_bytes, "w", False, b"", 0.0, 0.0, 0, 0)


def test_valid_call_is_admitted_once() -> None:
    key = SigningKey.generate()
    auth = CallAuthenticator(lambda wid: _row(key) if wid == key.worker_id else None)
    metadata = call_metadata(key, METHOD)
    assert auth.authenticate(metadata, METHOD).worker_id == key.worker_id
    with pytest.raises(UnauthenticatedError, match="replayed"):
        auth.authenticate(metadata, METHOD)


def test_signature_binds_the_method() -> None:
    key = SigningKey.generate()
    auth = CallAuthenticator(lambda wid: _row(key))
    metadata = call_metadata(key, METHOD)
    with pytest.raises(UnauthenticatedError, match="does not verify"):
        auth.authenticate(metadata, "/hefl.v1.FederationService/UploadUpdate")


def test_stale_calls_are_refused() -> None:
    key = SigningKey.generate()
    auth = CallAuthenticator(lambda wid: _row(key), clock=lambda: time.time() + 3600)
    with pytest.raises(UnauthenticatedError, match="clock"):
        auth.authenticate(call_metadata(key, METHOD), METHOD)


def test_missing_headers_and_unknown_workers() -> None:
    key = SigningKey.generate()
    auth = CallAuthenticator(lambda wid: None)
    with pytest.raises(UnauthenticatedError, match="missing"):
        auth.authenticate([], METHOD)
    with pytest.raises(UnauthenticatedError, match="unknown worker"):
        auth.authenticate(call_metadata(key, METHOD), METHOD)
