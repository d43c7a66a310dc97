"""Coordinator configuration: typed sections, loaded from TOML, environment and flags.

Precedence, lowest to highest: dataclass defaults < the TOML file < ``HEFL_<SECTION>__<FIELD>``
environment variables < ``--set section.field=value`` flags (and the named shortcut flags).
Every problem in a configuration is collected and reported at once.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli

PROFILES = ("plaintext", "fast", "provable", "oneshot")
ENV_PREFIX = "HEFL_"


class ConfigError(ValueError):
    """A configuration is invalid; the message lists every problem found."""


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Network endpoints and gRPC transport settings."""

    listen_address: str = "127.0.0.1:50051"
    """gRPC address; port 0 picks a free port (printed on start-up)."""
    metrics_address: str = "127.0.0.1:9464"
    """Prometheus /metrics address; empty disables the endpoint."""
    health_address: str = ""
    """Plaintext gRPC address serving only grpc.health.v1.Health (Kubernetes probes); empty: off."""
    grace_period_seconds: float = 10.0
    """On SIGTERM: time in-flight calls get to finish after health turns NOT_SERVING."""
    max_message_bytes: int = 8 * 1024 * 1024
    """Largest gRPC message either way; payloads above it travel as chunked streams."""
    keepalive_time_seconds: float = 60.0
    """Server pings an idle connection this often, so dead devices are noticed."""
    keepalive_timeout_seconds: float = 20.0
    """A ping unanswered this long closes the connection."""
    min_client_ping_interval_seconds: float = 30.0
    """Clients pinging more often than this get GOAWAY (clients use >= this value)."""
    max_concurrent_streams: int = 256
    """Per-connection HTTP/2 stream limit."""
    tls_cert: str = ""
    """PEM certificate of the coordinator (python -m crypto.certs demo writes one)."""
    tls_key: str = ""
    """PEM private key of that certificate."""
    tls_client_ca: str = ""
    """PEM CA that issues device certificates; every client must present one (mutual TLS)."""
    insecure: bool = False
    """Serve plaintext gRPC without TLS: loopback demos and tests only; logged as a warning."""


@dataclass(frozen=True, kw_only=True)
class FederationConfig:
    """What is trained, under which protection, and who may join."""

    federation_id: str = "default"
    """Identifier workers name in every call."""
    profile: str = "oneshot"
    """Crypto profile: plaintext (comparison runs only), fast, provable or oneshot."""
    initial_model: str = ""
    """Path of the initial model payload (docs/protocol.md); required on first start."""
    enrollment_tokens: tuple[str, ...] = ()
    """Tokens accepted by EnrollWorker; empty accepts any device (demo and tests only)."""
    allow_plaintext: bool = False
    """The plaintext profile must be asked for explicitly: it has no privacy."""


@dataclass(frozen=True, kw_only=True)
class RoundConfig:
    """Round cadence, selection and quorum."""

    interval_seconds: float = 30.0
    """A new round opens this long after the previous one opened (or when it ends)."""
    collect_seconds: float = 20.0
    """Length of the collection window: task deadlines are window open + this."""
    goal_contributors: int = 10
    """Uploads wanted; the window closes early once they have arrived."""
    over_selection: float = 1.3
    """Devices selected per goal contributor, to absorb dropouts."""
    min_contributors: int = 3
    """Fewest uploads for which an aggregate is opened; below it the round is abandoned."""
    max_rounds: int = 0
    """Stop opening rounds after this many (0: no limit)."""
    retry_jitter_seconds: float = 5.0
    """Width of the retry windows given to devices that were not selected."""
    active_worker_seconds: float = 120.0
    """A worker seen within this period counts as active."""
    min_enrolled_workers: int = 0
    """Do not open the first round before this many workers have enrolled."""


@dataclass(frozen=True, kw_only=True)
class CommitteeConfig:
    """The key-holder committee of the secure profiles."""

    size: int = 5
    """Members k, chosen among connected key-holder-capable workers."""
    threshold: int = 0
    """Shares t that open an aggregate; 0 picks a majority."""
    task_timeout_seconds: float = 30.0
    """How long a committee step waits for members' answers."""
    wait_for_members_seconds: float = 120.0
    """How long a key ceremony waits for enough key holders to connect."""
    key_epoch_rounds: int = 100
    """Rounds after which the keys rotate (BGV profiles also rotate after covering a member)."""


@dataclass(frozen=True, kw_only=True)
class CodecSettings:
    """How updates are quantized (the rest follows from the privacy settings)."""

    bits: int = 16
    """Field width b (4..16)."""
    clip_norm: float = 1.0
    """L2 clipping norm c of each update, in model units."""
    scale: float = 0.0
    """Quantization scale 1/gamma; 0 derives it from bits, clip and (with DP) the noise."""
    rounding_beta: float = -1.0
    """Conditional-rounding beta; negative picks e^-0.5 with DP and 0 without."""
    sum_mode: str = "auto"
    """auto (mod with DP, exact without), mod or exact."""


@dataclass(frozen=True, kw_only=True)
class PrivacyConfig:
    """Distributed differential privacy and its budget."""

    enabled: bool = True
    """Add calibrated Skellam noise and keep the ledger; false means no DP at all."""
    epsilon: float = 8.0
    """Budget: epsilon after ``rounds`` rounds."""
    delta: float = 1e-5
    """Delta at which epsilon is accounted."""
    rounds: int = 100
    """Rounds the budget must cover; rounds beyond it are refused."""
    sampling: str = "none"
    """Sampling assumption of the accountant: none, or poisson:q."""


@dataclass(frozen=True, kw_only=True)
class LimitsConfig:
    """Sizes and rates refused with RESOURCE_EXHAUSTED."""

    max_chunk_size_bytes: int = 1024 * 1024
    """Largest chunk in any framed stream."""
    max_payload_size_bytes: int = 512 * 1024 * 1024
    """Largest upload payload."""
    max_calls_per_worker_per_minute: int = 600
    """Per-worker call rate above which calls are refused."""


@dataclass(frozen=True, kw_only=True)
class StateConfig:
    """Where durable state lives."""

    state_dir: str = "var/coordinator"
    """SQLite database and blob directory; created if missing."""


@dataclass(frozen=True, kw_only=True)
class CoordinatorConfig:
    """The whole configuration of one coordinator process."""

    server: ServerConfig = field(default_factory=ServerConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    round: RoundConfig = field(default_factory=RoundConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    state: StateConfig = field(default_factory=StateConfig)
    committee: CommitteeConfig = field(default_factory=CommitteeConfig)
    codec: CodecSettings = field(default_factory=CodecSettings)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    def validate(self) -> None:
        """Raises ConfigError listing every inconsistency."""
        problems: list[str] = []
        fed, rnd, lim = self.federation, self.round, self.limits
        if fed.profile not in PROFILES:
            problems.append(f"federation.profile must be one of {PROFILES}, got {fed.profile!r}")
        if fed.profile == "plaintext" and not fed.allow_plaintext:
            problems.append(
                "federation.profile = plaintext has no privacy; set federation.allow_plaintext"
                " = true to run it (comparison runs only)"
            )
        if not fed.federation_id:
            problems.append("federation.federation_id must not be empty")
        if rnd.min_contributors < 1:
            problems.append("round.min_contributors must be at least 1")
        if rnd.goal_contributors < rnd.min_contributors:
            problems.append("round.goal_contributors must be >= round.min_contributors")
        if rnd.over_selection < 1.0:
            problems.append("round.over_selection must be >= 1.0")
        if rnd.collect_seconds <= 0 or rnd.interval_seconds <= 0:
            problems.append("round.collect_seconds and round.interval_seconds must be positive")
        if not 0 < lim.max_chunk_size_bytes < self.server.max_message_bytes:
            problems.append(
                "limits.max_chunk_size_bytes must be positive and below max_message_bytes"
            )
        if lim.max_payload_size_bytes < lim.max_chunk_size_bytes:
            problems.append("limits.max_payload_size_bytes must be >= max_chunk_size_bytes")
        server = self.server
        tls_files = (server.tls_cert, server.tls_key, server.tls_client_ca)
        if server.insecure and any(tls_files):
            problems.append("server.insecure = true conflicts with the server.tls_* files")
        if not server.insecure and not all(tls_files):
            problems.append(
                "mutual TLS needs server.tls_cert, server.tls_key and server.tls_client_ca"
                " (python -m crypto.certs demo DIR writes them); server.insecure = true runs"
                " without TLS, for loopback demos and tests only"
            )
        committee = self.committee
        if committee.size < 3:
            problems.append("committee.size must be at least 3 (a majority of 2 tolerates nothing)")
        if committee.threshold and not committee.size // 2 < committee.threshold <= committee.size:
            problems.append("committee.threshold must be a majority of committee.size (or 0)")
        if not 4 <= self.codec.bits <= 16:
            problems.append("codec.bits must be in 4..16")
        if self.codec.clip_norm <= 0:
            problems.append("codec.clip_norm must be positive")
        if self.codec.sum_mode not in ("auto", "mod", "exact"):
            problems.append("codec.sum_mode must be auto, mod or exact")
        if self.privacy.enabled and self.codec.sum_mode == "exact":
            problems.append("codec.sum_mode = exact cannot carry DP noise; use mod or auto")
        if self.privacy.enabled and not (self.privacy.epsilon > 0 and 0 < self.privacy.delta < 1):
            problems.append("privacy.epsilon must be positive and privacy.delta in (0, 1)")
        if self.server.min_client_ping_interval_seconds <= 0:
            problems.append("server.min_client_ping_interval_seconds must be positive")
        if problems:
            raise ConfigError("invalid coordinator configuration:\n  " + "\n  ".join(problems))


def _coerce(value: Any, target: Any, key: str) -> Any:
    """Converts a TOML/env/flag value to the field's declared type."""
    origin = typing.get_origin(target)
    if origin is tuple:
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(item).strip() for item in items if str(item).strip())
    if target is bool:
        if isinstance(value, bool):
            return value
        lowered = str(value).strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{key}: expected a boolean, got {value!r}")
    if target in (int, float, str):
        if target is int and isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return target(value)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"{key}: expected {target.__name__}, got {value!r}") from error
    raise ConfigError(f"{key}: unsupported field type {target!r}")


def _section_types(cls: type[Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def build_config(
    file_values: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> CoordinatorConfig:
    """Merges the three sources over the defaults and validates the result.

    Args:
        file_values: Parsed TOML, ``{section: {field: value}}``.
        env: Environment; only ``HEFL_<SECTION>__<FIELD>`` names are read.
        overrides: ``{"section.field": value}`` from flags.

    Raises:
        ConfigError: listing every unknown key, bad value and inconsistency.
    """
    sections = _section_types(CoordinatorConfig)
    merged: dict[str, dict[str, Any]] = {name: {} for name in sections}
    problems: list[str] = []

    def put(section: str, name: str, value: Any, source: str) -> None:
        if section not in sections:
            problems.append(f"{source}: unknown section {section!r}")
            return
        fields = _section_types(sections[section])
        if name not in fields:
            problems.append(f"{source}: unknown setting {section}.{name}")
            return
        try:
            merged[section][name] = _coerce(value, fields[name], f"{section}.{name}")
        except ConfigError as error:
            problems.append(f"{source}: {error}")

    for section, values in (file_values or {}).items():
        if section not in sections:
            problems.append(f"config file: unknown section {section!r}")
            continue
        if not isinstance(values, Mapping):
            problems.append(f"config file: {section!r} must be a table")
            continue
        for name, value in values.items():
            put(section, name, value, "config file")
    for name, value in (env or {}).items():
        if name.startswith(ENV_PREFIX) and "__" in name:
            section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
            put(section, key, value, f"environment {name}")
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        put(section, key, value, f"flag {dotted}")
    if problems:
        raise ConfigError("invalid coordinator configuration:\n  " + "\n  ".join(problems))
    config = CoordinatorConfig(
        **{name: cls(**merged[name]) for name, cls in sections.items()}  # type: ignore[arg-type]
    )
    config.validate()
    return config


def load_config(
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> CoordinatorConfig:
    """Reads a TOML file (if given) and builds the configuration."""
    file_values: dict[str, Any] = {}
    if path:
        try:
            file_values = tomli.loads(Path(path).read_text())
        except OSError as error:
            raise ConfigError(f"cannot read config file {path}: {error}") from error
        except tomli.TOMLDecodeError as error:
            raise ConfigError(f"config file {path} is not valid TOML: {error}") from error
    return build_config(file_values, env, overrides)


def describe(config: CoordinatorConfig) -> dict[str, dict[str, Any]]:
    """The effective configuration as plain data, for the start-up log."""
    return {
        name: dataclasses.asdict(getattr(config, name))
        for name in _section_types(CoordinatorConfig)
    }
