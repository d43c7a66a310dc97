"""The device's long-term signing key, kept in its own state directory (mode 0600)."""

from __future__ import annotations

import os
from pathlib import Path

from crypto.signing import SigningKey

_KEY_FILE = "signing.key"


def load_or_create_identity(state_dir: Path) -> SigningKey:
    """Loads the device key, creating it on first start.

    The key never leaves the device: enrolment sends only the public half and a proof of
    possession.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / _KEY_FILE
    if path.exists():
        return SigningKey.from_private_bytes(path.read_bytes())
    key = SigningKey.generate()
    temporary = path.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.private_bytes())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return key
