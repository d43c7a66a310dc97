"""The device's long-term signing key, kept in its own state directory (mode 0600)."""

from __future__ import annotations

from pathlib import Path

from crypto.certs import SIGNING_KEY_FILE
from crypto.durable import write_durable
from crypto.signing import SigningKey

_KEY_FILE = SIGNING_KEY_FILE


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
    write_durable(path, key.private_bytes(), private=True)
    return key
