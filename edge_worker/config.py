"""Worker configuration: one frozen dataclass, built from flags over environment defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    """Everything a worker process needs to know."""

    coordinator: str = "127.0.0.1:50051"
    """gRPC address of the coordinator."""
    federation_id: str = "default"
    """Federation to join."""
    state_dir: str = "var/worker"
    """Where the device keeps its signing key, model, ledger and member state."""
    display_name: str = ""
    """Name shown to operators; never a metric label."""
    enrollment_token: str = ""
    """Enrolment secret issued by the federation's operator."""
    key_holder: bool = False
    """Offer to serve on the key committee."""
    call_timeout_seconds: float = 30.0
    """Deadline of each unary call."""
    transfer_timeout_seconds: float = 600.0
    """Deadline of one upload or download stream."""
    chunk_size_bytes: int = 256 * 1024
    """Upload chunk size (capped by the task's max_chunk_size_bytes)."""
    backoff_initial_seconds: float = 0.5
    """First retry delay after UNAVAILABLE or DEADLINE_EXCEEDED."""
    backoff_max_seconds: float = 20.0
    """Longest retry delay (full jitter below it)."""
    max_attempts: int = 0
    """Retries per call before giving up (0: keep trying until the task deadline)."""
    keepalive_time_seconds: float = 30.0
    """Client pings; must be >= the server's min_client_ping_interval_seconds."""
    max_message_bytes: int = 8 * 1024 * 1024
    """Largest gRPC message either way."""
    max_rounds: int = 0
    """Stop after contributing to this many rounds (0: run until stopped)."""
    expected_online_seconds: int = 0
    """Told to the coordinator at check-in (0: unknown)."""
    record_updates_dir: str = ""
    """If set, each round's quantized fields (this device's own data) are written there, for
    audits and end-to-end tests; empty keeps nothing."""
    serve_committee_after_rounds: bool = True
    """A key holder that reached max_rounds keeps answering committee tasks until stopped."""
    tls_ca: str = ""
    """PEM of the device CA (default: ``state_dir/ca.pem``)."""
    tls_cert: str = ""
    """PEM certificate of this device (default: ``state_dir/tls.pem``)."""
    tls_key: str = ""
    """PEM key of that certificate (default: ``state_dir/tls.key``)."""
    insecure: bool = False
    """Connect without TLS: loopback demos and tests only; logged as a warning."""
    reproducible_rounding_seed: str = ""
    """Test runs only: seeds stochastic rounding (and, as a key holder, its seed contributions)
    so that a DP-free run repeats bit for bit; rounds with DP are refused in this mode."""
    privacy_budget_epsilon: float = 0.0
    """The device's own epsilon budget (at the federation's delta); 0 keeps a ledger only."""
    min_contributors_floor: int = 2
    """As a key holder: fewest contributors this device ever helps open, whatever is asked."""
