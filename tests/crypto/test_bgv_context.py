"""Contexts: BINARY round trip, refusal of foreign bytes, warm-up, use from another process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from crypto.bgv import (
    FAST,
    PROVABLE,
    Aggregator,
    Committee,
    DecryptionPlan,
    Fuser,
    ProfileError,
    create_context,
    load_context,
    open_context,
    partial_decrypt,
)
from tests.crypto.test_bgv_ceremony import run_ceremony

REPO = Path(__file__).resolve().parents[2]

# Loads the context and joint key from files, then encrypts on a *fresh* thread: without the
# warm-up this first packed encode on a new thread hangs forever (study §6.4).
_WORKER = """
import sys, threading
from pathlib import Path
import numpy as np
from crypto.bgv import FAST, Encryptor, load_context
folder = Path(sys.argv[1])
ctx = load_context(FAST, (folder / "context.bin").read_bytes())
joint = (folder / "joint.bin").read_bytes()
out = []
def work():
    slots = np.arange(ctx.ring_dimension, dtype=np.int64) % 1000
    out.extend(Encryptor(ctx, joint).encrypt(slots))
thread = threading.Thread(target=work)
thread.start()
thread.join()
(folder / "upload.bin").write_bytes(out[0])
print("ok")
"""


def test_context_bytes_round_trip_and_foreign_bytes_are_refused() -> None:
    ctx = create_context(FAST)
    blob = ctx.serialize()
    assert load_context(FAST, blob).serialize() == blob
    assert create_context(FAST).serialize() == blob  # generation is deterministic
    tampered = bytearray(blob)
    tampered[len(blob) // 2] ^= 1
    with pytest.raises(ProfileError, match="differ"):
        load_context(FAST, bytes(tampered))
    with pytest.raises(ProfileError):
        load_context(FAST, open_context(PROVABLE).serialize())


def test_a_worker_process_encrypts_on_a_fresh_thread_for_the_coordinator(
    tmp_path: Path,
) -> None:
    ctx = open_context(FAST)
    ceremony = run_ceremony(ctx, Committee(3, 2))
    (tmp_path / "context.bin").write_bytes(ctx.serialize())
    (tmp_path / "joint.bin").write_bytes(ceremony.joint)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", _WORKER, str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"

    aggregator = Aggregator(ctx, ceremony.joint, ciphertexts_per_upload=1)
    aggregator.lane().add_upload("worker", [(tmp_path / "upload.bin").read_bytes()])
    result = aggregator.finish()
    plan = DecryptionPlan.make(ceremony.committee, [2, 3])
    partials = {i: partial_decrypt(ceremony.members[i], plan, result.ciphertexts) for i in (2, 3)}
    out = Fuser(ctx, ceremony.members[1].crs_blob, result.ciphertexts).fuse(plan, partials)
    assert np.array_equal(out, np.arange(ctx.ring_dimension) % 1000)
