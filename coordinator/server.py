"""Assembles and runs the coordinator: gRPC server, health, reflection, metrics, round engine.

Shutdown on SIGTERM/SIGINT: health turns NOT_SERVING first (so load balancers and probes stop
sending work), the round engine stops opening rounds, in-flight calls get the grace period, then
the metrics endpoint and the database close. Durable state needs no flushing beyond last-seen
times: everything acknowledged is already committed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from coordinator.anomalies import AnomalyMonitor, AnomalyThresholds
from coordinator.anomaly_rules import PrivacyTrajectory
from coordinator.auth import CallAuthenticator
from coordinator.committee.epochs import EpochManager
from coordinator.committee.hub import CommitteeHub
from coordinator.config import ConfigError, CoordinatorConfig
from coordinator.downloads import ModelDownloads
from coordinator.events import EventBus
from coordinator.metrics import CoordinatorMetrics
from coordinator.models import ModelRegistry
from coordinator.privacy_plan import RoundPlan, make_plan
from coordinator.profiles.base import RoundProtocol
from coordinator.profiles.oneshot import OneshotProtocol
from coordinator.profiles.plaintext import PlaintextProtocol
from coordinator.rounds import RoundEngine
from coordinator.server_optimizer import ServerOptimizerConfig
from coordinator.servicers.committee_servicer import CommitteeServicer
from coordinator.servicers.federation_servicer import FederationServicer
from coordinator.servicers.gate import Gate
from coordinator.servicers.operator_servicer import OperatorServicer
from coordinator.servicers.validation import ValidationInterceptor
from coordinator.store import Store
from coordinator.tls import enrollment_verifier, server_credentials
from coordinator.uploads import UploadReceiver
from crypto import model_payload
from crypto.privacy import CalibrationError
from hefl.v1 import committee_service_pb2, federation_service_pb2, operator_service_pb2
from hefl.v1 import committee_service_pb2_grpc as cmt_grpc
from hefl.v1 import common_pb2 as common
from hefl.v1 import federation_service_pb2_grpc as fed_grpc
from hefl.v1 import operator_service_pb2_grpc as ops_grpc

logger = logging.getLogger(__name__)

SERVICE_NAMES = (
    federation_service_pb2.DESCRIPTOR.services_by_name["FederationService"].full_name,
    committee_service_pb2.DESCRIPTOR.services_by_name["CommitteeService"].full_name,
    operator_service_pb2.DESCRIPTOR.services_by_name["OperatorService"].full_name,
)
_HOUSEKEEPING_SECONDS = 5.0


def server_options(config: CoordinatorConfig) -> list[tuple[str, int]]:
    """GRPC server channel arguments, one place for every transport limit."""
    server = config.server
    return [
        ("grpc.max_receive_message_length", server.max_message_bytes),
        ("grpc.max_send_message_length", server.max_message_bytes),
        # Ping idle devices so half-open connections (a phone that left coverage) are noticed.
        ("grpc.keepalive_time_ms", int(server.keepalive_time_seconds * 1000)),
        ("grpc.keepalive_timeout_ms", int(server.keepalive_timeout_seconds * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        # Clients must not ping more often than this; they are configured to match.
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            int(server.min_client_ping_interval_seconds * 1000),
        ),
        ("grpc.http2.max_ping_strikes", 2),
        ("grpc.max_concurrent_streams", server.max_concurrent_streams),
    ]


def make_protocol(
    config: CoordinatorConfig, store: Store, models: ModelRegistry, hub: CommitteeHub
) -> RoundProtocol:
    """The round protocol of the configured crypto profile."""
    profile = config.federation.profile
    if profile == "plaintext":
        return PlaintextProtocol(models.parameter_count)
    max_summands = math.ceil(config.round.goal_contributors * config.round.over_selection)
    try:
        plan = make_plan(config, store, models.parameter_count, max_summands)
    except (CalibrationError, ValueError) as error:
        raise ConfigError(f"codec/privacy settings cannot be met: {error}") from error
    if profile == "oneshot":
        epochs = EpochManager(
            config.committee,
            store,
            hub,
            config.federation.federation_id,
            common.CRYPTO_PROFILE_ONESHOT,
            verifier=enrollment_verifier(config.server),
        )
        return OneshotProtocol(config.committee, hub, epochs, plan, store)
    if profile in ("fast", "provable"):
        # Imported here so that processes of the other profiles never load OpenFHE.
        from coordinator.profiles.bgv import BgvProtocol

        return BgvProtocol.create(config, store, hub, plan)
    raise ConfigError(f"federation.profile = {profile!r} is not available in this build")


@dataclass
class Coordinator:
    """A running coordinator and the handles needed to stop it."""

    config: CoordinatorConfig
    store: Store
    metrics: CoordinatorMetrics
    engine: RoundEngine
    server: grpc.aio.Server
    health: health_aio.HealthServicer
    gate: Gate
    grpc_address: str
    metrics_address: str
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    metrics_server: Any = None
    hub: CommitteeHub | None = None
    health_server: grpc.aio.Server | None = None
    health_address: str = ""

    async def stop(self) -> None:
        """Drains and stops everything; safe to call twice."""
        if self.stop_event.is_set() and not self.tasks:
            return
        self.stop_event.set()
        await self.health.enter_graceful_shutdown()
        if self.hub is not None:
            self.hub.close()
        await self.server.stop(self.config.server.grace_period_seconds)
        if self.health_server is not None:
            await self.health_server.stop(0)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.tasks.clear()
        self.gate.flush_last_seen()
        if self.metrics_server is not None:
            self.metrics_server.shutdown()
            self.metrics_server.server_close()
        self.store.close()


def _trajectory(config: CoordinatorConfig, protocol: RoundProtocol) -> PrivacyTrajectory | None:
    """The planned epsilon curve the budget-burn detector compares against (DP runs only)."""
    plan = getattr(protocol, "plan", None)
    if not isinstance(plan, RoundPlan) or plan.mechanism is None:
        return None
    return PrivacyTrajectory(plan.mechanism, plan.delta, config.privacy.rounds)


def _initial_model(config: CoordinatorConfig, models: ModelRegistry) -> None:
    if models.latest_version:
        return
    path = config.federation.initial_model
    if not path:
        raise ConfigError(
            "federation.initial_model is required on first start (a model payload file;"
            " see docs/protocol.md, or edge_worker.save_initial_model)"
        )
    try:
        payload = model_payload.decode_model(Path(path).read_bytes())
    except (OSError, model_payload.PayloadError) as error:
        raise ConfigError(f"federation.initial_model {path}: {error}") from error
    models.initialize(payload.values)


async def start(
    config: CoordinatorConfig, registry: CollectorRegistry | None = None
) -> Coordinator:
    """Builds every component, binds the ports and starts serving and rounds."""
    store = Store(Path(config.state.state_dir))
    store.bind_federation(config.federation.federation_id, config.federation.profile)
    metrics = CoordinatorMetrics.create(registry)
    models = ModelRegistry(store, ServerOptimizerConfig(), correction_bits=8)
    _initial_model(config, models)
    hub = CommitteeHub()
    protocol = make_protocol(config, store, models, hub)
    events = EventBus(store)
    anomalies = AnomalyMonitor(
        metrics, store, events, AnomalyThresholds(), _trajectory(config, protocol)
    )
    anomalies.restore_history()
    engine = RoundEngine(config, store, models, protocol, metrics, events, anomalies=anomalies)
    gate = Gate(
        store,
        CallAuthenticator(store.get_worker),
        metrics,
        config.limits.max_calls_per_worker_per_minute,
        mutual_tls=not config.server.insecure,
    )
    uploads = UploadReceiver(store, engine, config.limits, metrics, config.federation.federation_id)
    uploads.trim_after_restart()
    downloads = ModelDownloads(models, metrics, config.limits.max_chunk_size_bytes)

    server = grpc.aio.server(options=server_options(config), interceptors=[ValidationInterceptor()])
    fed_grpc.add_FederationServiceServicer_to_server(
        FederationServicer(config, store, gate, engine, uploads, downloads, anomalies), server
    )
    ops_grpc.add_OperatorServiceServicer_to_server(
        OperatorServicer(config, store, gate, engine, events), server
    )
    cmt_grpc.add_CommitteeServiceServicer_to_server(CommitteeServicer(config, gate, hub), server)
    health_servicer = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    host = config.server.listen_address.rsplit(":", 1)[0]
    if config.server.insecure:
        logger.warning(
            "serving WITHOUT TLS (server.insecure = true): anyone on the network can read and"
            " inject traffic; use this for loopback demos and tests only"
        )
        port = server.add_insecure_port(config.server.listen_address)
    else:
        port = server.add_secure_port(
            config.server.listen_address, server_credentials(config.server)
        )
    if port == 0:
        raise ConfigError(f"cannot bind server.listen_address {config.server.listen_address}")
    await server.start()

    health_server, health_address = await _start_health_listener(config, health_servicer)

    metrics_address = ""
    metrics_server = None
    if config.server.metrics_address:
        metrics_host, metrics_port = config.server.metrics_address.rsplit(":", 1)
        metrics_server, _ = start_http_server(
            int(metrics_port), addr=metrics_host, registry=metrics.registry
        )
        metrics_address = f"{metrics_host}:{metrics_server.server_port}"

    coordinator = Coordinator(
        config=config,
        store=store,
        metrics=metrics,
        engine=engine,
        server=server,
        health=health_servicer,
        gate=gate,
        grpc_address=f"{host}:{port}",
        metrics_address=metrics_address,
        metrics_server=metrics_server,
        hub=hub,
        health_server=health_server,
        health_address=health_address,
    )
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    metrics.global_version.set(models.latest_version)
    coordinator.tasks.append(asyncio.create_task(engine.run(coordinator.stop_event)))
    coordinator.tasks.append(asyncio.create_task(_housekeeping(coordinator)))
    return coordinator


async def _start_health_listener(
    config: CoordinatorConfig, health_servicer: health_aio.HealthServicer
) -> tuple[grpc.aio.Server | None, str]:
    """A plaintext listener with nothing but the health service, for probes that cannot do mTLS.

    Kubernetes' grpc probe speaks plaintext only. The listener shares the main server's health
    servicer, so a drain turns both NOT_SERVING at once; it exposes no data and accepts no
    federation call.
    """
    if not config.server.health_address:
        return None, ""
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(config.server.health_address)
    if port == 0:
        raise ConfigError(f"cannot bind server.health_address {config.server.health_address}")
    await server.start()
    return server, f"{config.server.health_address.rsplit(':', 1)[0]}:{port}"


async def _housekeeping(coordinator: Coordinator) -> None:
    """Periodically persists activity and refreshes gauges."""
    while not coordinator.stop_event.is_set():
        try:
            coordinator.gate.flush_last_seen()
            metrics = coordinator.metrics
            metrics.enrolled_workers.set(len(coordinator.store.list_workers()))
            metrics.active_workers.set(
                coordinator.gate.active_workers(coordinator.config.round.active_worker_seconds)
            )
        except Exception:  # noqa: BLE001 - housekeeping must never take the server down
            logger.exception("housekeeping failed")
        await asyncio.sleep(_HOUSEKEEPING_SECONDS)


async def serve(config: CoordinatorConfig) -> int:
    """Runs a coordinator until SIGTERM or SIGINT; returns the process exit code."""
    coordinator = await start(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, coordinator.stop_event.set)
    ready = {
        "grpc_address": coordinator.grpc_address,
        "metrics_address": coordinator.metrics_address,
        "health_address": coordinator.health_address,
    }
    # The first stdout line is machine-readable so scripts and tests can find the ports.
    print("HEFL_READY " + json.dumps(ready), flush=True)
    logger.info(
        "coordinator serving federation %s (%s) on %s, metrics on %s",
        config.federation.federation_id,
        config.federation.profile,
        coordinator.grpc_address,
        coordinator.metrics_address or "(disabled)",
    )
    await coordinator.stop_event.wait()
    logger.info("shutting down: draining for up to %.0f s", config.server.grace_period_seconds)
    await coordinator.stop()
    return 0
