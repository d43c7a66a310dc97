"""The privacy budget is enforced at run time: the round that would exceed it never starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.federation import FederationSpec, LocalFederation, Observer
from hefl.v1 import operator_service_pb2 as ops
from hefl.v1 import operator_service_pb2_grpc as ops_grpc

PLANNED = 2


@pytest.mark.timeout(300)
async def test_the_round_past_the_budget_is_refused_before_it_starts(tmp_path: Path) -> None:
    spec = FederationSpec(
        workdir=tmp_path,
        federation_id="fed",
        workers=6,
        key_holders=5,
        profile="oneshot",
        dp=True,
        epsilon=4.0,
        rounds=PLANNED,  # the budget covers two rounds...
        min_contributors=5,
        server_settings={"round.max_rounds": "5"},  # ...and the operator asks for more
    )
    federation = LocalFederation(spec)
    coordinator = federation.start()
    try:
        observer = Observer(coordinator.grpc_address, spec)
        await observer.enroll()
        reports = await observer.follow(PLANNED + 1, timeout=240)
        async with observer.operator_channel() as channel:
            ledger = await ops_grpc.OperatorServiceStub(channel).GetPrivacyLedger(
                ops.GetPrivacyLedgerRequest(federation_id="fed"), timeout=10
            )
        rounds_after = await observer.rounds()
    finally:
        assert federation.stop() == 0
    outcomes = [r.outcome for r in reports[: PLANNED + 1]]
    assert outcomes == ["published"] * PLANNED + ["budget_refused"]
    # Nothing was spent on the refused round, and no round opened after it.
    assert len(ledger.entries) == PLANNED
    assert ledger.epsilon_spent == pytest.approx(ledger.entries[-1].epsilon_cumulative)
    assert 0 < ledger.epsilon_spent <= ledger.epsilon_budget == spec.epsilon
    assert [r.round_number for r in rounds_after] == list(range(1, PLANNED + 2))
    assert "would exceed" in coordinator.log() or "budget" in coordinator.log()
