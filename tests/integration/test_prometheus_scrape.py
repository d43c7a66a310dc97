"""A real Prometheus (Debian's package, loopback only) scrapes a coordinator while a DP federation
runs, and reads the privacy budget and the round counters back through its HTTP query API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from examples.federation import FederationSpec, LocalFederation, Observer
from tests.support.prometheus import running

ROUNDS = 3
ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def _value(result: list[dict[str, Any]]) -> float:
    return sum(float(sample["value"][1]) for sample in result)


@pytest.mark.timeout(300)
async def test_prometheus_reads_the_budget_and_rounds_while_a_federation_runs(
    tmp_path: Path,
) -> None:
    spec = FederationSpec(
        workdir=tmp_path / "federation",
        federation_id="fed",
        workers=6,
        key_holders=5,
        profile="oneshot",
        dp=True,
        epsilon=20.0,
        rounds=ROUNDS,
        min_contributors=5,
    )
    federation = LocalFederation(spec)
    coordinator = federation.start()
    try:
        with running(
            tmp_path / "prometheus", [coordinator.metrics_address], rule_files=[ALERTS]
        ) as prometheus:
            observer = Observer(coordinator.grpc_address, spec)
            await observer.enroll()
            # While rounds run: the counters move and the budget gauge is there.
            first = prometheus.wait_for(
                'hefl_coordinator_rounds_total{outcome="published"}',
                until=lambda r: _value(r) >= 1,
                timeout=240,
            )
            assert _value(first) >= 1
            reports = await observer.follow(ROUNDS, timeout=240)
            spent = reports[-1].epsilon
            assert 0 < spent <= spec.epsilon
            published = prometheus.wait_for(
                'hefl_coordinator_rounds_total{outcome="published"}',
                until=lambda r: _value(r) >= ROUNDS,
            )
            assert _value(published) == ROUNDS
            epsilon = prometheus.wait_for(
                "hefl_privacy_epsilon_spent", until=lambda r: abs(_value(r) - spent) < 1e-9
            )
            assert _value(epsilon) == pytest.approx(spent)
            remaining = prometheus.query("hefl_privacy_epsilon_remaining")
            assert _value(remaining) == pytest.approx(spec.epsilon - spent)
            version = prometheus.query("hefl_coordinator_global_version")
            assert _value(version) == ROUNDS + 1
            # The alert rules load and evaluate against the live series.
            rules = prometheus.get("/api/v1/rules")
            groups = rules["data"]["groups"]
            assert groups and all(
                rule.get("health") == "ok" for group in groups for rule in group["rules"]
            )
    finally:
        assert federation.stop() == 0
