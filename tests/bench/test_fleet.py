"""Pure parts of bench/suites/_fleet.py and _procfs.py (no processes are started)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from bench import suites
from bench.suites import _fleet, _procfs
from coordinator.config import build_config
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2 as fed
from hefl.v1 import operator_service_pb2 as ops

STATUS = """Name:\tpython
VmPeak:\t 1200000 kB
VmHWM:\t  734512 kB
VmRSS:\t  700000 kB
"""


def test_vmhwm_is_read_from_a_proc_status_text() -> None:
    assert _procfs.parse_vmhwm_kib(STATUS) == 734512
    with pytest.raises(ValueError, match="no VmHWM"):
        _procfs.parse_vmhwm_kib("Name:\tpython\nVmRSS:\t 1 kB\n")
    with pytest.raises(ValueError, match="unit"):
        _procfs.parse_vmhwm_kib("VmHWM:\t 1 MB\n")


def test_peak_rss_of_this_process_is_positive() -> None:
    assert _procfs.peak_rss_mib() > 1.0


def test_upload_frames_are_header_contiguous_chunks_and_trailer() -> None:
    payload = bytes(range(256)) * 40  # 10,240 bytes
    trailer = fed.UploadTrailer(payload_sha256=hashlib.sha256(payload).digest())
    frames = _fleet.upload_frames("t1", 3, common.CRYPTO_PROFILE_ONESHOT, 2, payload, trailer, 4096)
    kinds = [f.WhichOneof("frame") for f in frames]
    assert kinds == ["header", "chunk", "chunk", "chunk", "trailer"]
    header = frames[0].header
    assert (header.task_id, header.round_number, header.total_size_bytes) == ("t1", 3, 10240)
    assert header.payload_format_version == 2
    assert [f.chunk.offset_bytes for f in frames[1:-1]] == [0, 4096, 8192]
    assert b"".join(f.chunk.data for f in frames[1:-1]) == payload
    assert frames[-1].trailer == trailer
    prepared = _fleet.PreparedUpload("t1", frames, len(payload))
    assert prepared.wire_bytes > len(payload)


def test_fixed_delta_has_the_requested_norm_and_is_reproducible() -> None:
    delta = _fleet.fixed_delta(1000, 0.5, seed=3)
    assert delta.dtype == np.float32 and delta.shape == (1000,)
    assert float(np.linalg.norm(delta)) == pytest.approx(0.5, rel=1e-5)
    assert np.array_equal(delta, _fleet.fixed_delta(1000, 0.5, seed=3))


@pytest.mark.parametrize("profile", ["oneshot", "fast", "plaintext"])
def test_fleet_settings_form_a_valid_coordinator_configuration(
    profile: str, tmp_path: Path
) -> None:
    spec = _fleet.FleetSpec(
        workdir=tmp_path,
        parameters=1000,
        contributors=4,
        helper_devices=3,
        other_devices=1,
        profile=profile,
    )
    settings = _fleet.coordinator_settings(spec, tmp_path / "m.model")
    config = build_config(overrides=settings)
    assert config.round.goal_contributors == config.round.min_contributors == 4
    assert config.round.min_enrolled_workers == 3 + 3 + 1  # members + helper + others
    assert config.committee.size == 3
    assert config.privacy.enabled is (profile != "plaintext")
    assert config.federation.allow_plaintext is (profile == "plaintext")


def test_round_seconds_is_end_minus_open() -> None:
    summary = ops.RoundSummary(
        open_time=Timestamp(seconds=100, nanos=250_000_000),
        end_time=Timestamp(seconds=102, nanos=0),
    )
    assert _fleet.round_seconds(summary) == pytest.approx(1.75)


def test_metric_reads_a_sample_or_zero() -> None:
    samples: _fleet.Samples = {("m_sum", ()): 2.5, ("m", (("phase", "x"),)): 1.0}
    assert _fleet.metric(samples, "m_sum") == 2.5
    assert _fleet.metric(samples, "m", phase="x") == 1.0
    assert _fleet.metric(samples, "absent") == 0.0


def test_registry_lists_the_new_suites_and_hides_helper_modules() -> None:
    names = suites.available()
    for name in ("worker", "coordinator", "scaling", "flower"):
        assert name in names
        assert suites.load(name).name == name
    assert not any(name.startswith("_") for name in names)
    assert names[0] == "crypto"
