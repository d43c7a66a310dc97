"""The privacy ledger: budget refusal, composed numbers, abandoned rounds, rebuilds."""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import fields, replace

import dp_accounting
import pytest
from dp_accounting.rdp import rdp_privacy_accountant

from crypto.privacy import (
    DEFAULT_ORDERS,
    BudgetExceededError,
    CalibrationTarget,
    LedgerEntry,
    LedgerError,
    PrivacyLedger,
    RoundOutcome,
    Sampling,
    SkellamRound,
    calibrate,
    composed_epsilon,
    round_rdp,
)

MECH = SkellamRound(
    clip=1.0,
    scale=300.0,
    dim=2**16,
    beta=math.exp(-0.5),
    local_noise_variance=4_000.0,
    calibrated_contributors=50,
    bits=16,
)
DELTA = 1e-5


def _fill(ledger: PrivacyLedger, rounds: int, mech: SkellamRound = MECH) -> None:
    for number in range(1, rounds + 1):
        ledger.check(mech)
        ledger.record(number, mech, RoundOutcome.COMPLETED, mech.calibrated_contributors)


def test_refuses_the_first_round_past_a_calibrated_budget_and_not_one_before() -> None:
    target = CalibrationTarget(
        epsilon=4.0,
        delta=DELTA,
        rounds=40,
        calibrated_contributors=50,
        clip=1.0,
        dim=2**16,
        bits=16,
    )
    calibration = calibrate(target)
    ledger = PrivacyLedger.for_calibration(calibration)
    assert ledger.rounds_left(calibration.mechanism) == 40
    for number in range(1, 41):
        charge = ledger.check(calibration.mechanism)
        assert charge.allowed and charge.reason == ""
        ledger.record(number, calibration.mechanism, RoundOutcome.COMPLETED, 57)
    assert ledger.epsilon_spent == calibration.epsilon <= 4.0
    with pytest.raises(BudgetExceededError, match="privacy budget exceeded") as refused:
        ledger.check(calibration.mechanism)
    assert refused.value.charge.epsilon_cumulative > 4.0
    assert not ledger.preview(calibration.mechanism).allowed
    assert ledger.rounds_left(calibration.mechanism) == 0


def test_refusal_lands_exactly_where_dp_accounting_says_the_budget_runs_out() -> None:
    curve = round_rdp(MECH)
    eps = [
        rdp_privacy_accountant.compute_epsilon(list(DEFAULT_ORDERS), list(k * curve), DELTA)[0]
        for k in range(1, 30)
    ]
    budget = 0.5 * (eps[19] + eps[20])  # between 20 and 21 rounds
    ledger = PrivacyLedger(budget, DELTA)
    _fill(ledger, 20)
    with pytest.raises(BudgetExceededError):
        ledger.check(MECH)
    assert ledger.epsilon_spent == pytest.approx(eps[19], abs=1e-12)


def test_every_cumulative_is_the_composed_rdp_not_a_sum_of_epsilons() -> None:
    ledger = PrivacyLedger(1e6, DELTA)
    noisier = replace(MECH, local_noise_variance=9_000.0, bits=18)
    ledger.record(1, MECH, RoundOutcome.COMPLETED, 50)
    ledger.record(2, noisier, RoundOutcome.COMPLETED, 50)
    ledger.record(5, MECH, RoundOutcome.ABANDONED, 12)
    composed = 2 * round_rdp(MECH) + round_rdp(noisier)
    expected, _ = rdp_privacy_accountant.compute_epsilon(
        list(DEFAULT_ORDERS), list(composed), DELTA
    )
    entries = ledger.entries
    assert entries[-1].epsilon_cumulative == pytest.approx(expected, abs=1e-6)
    assert sum(e.epsilon_increment for e in entries) == pytest.approx(ledger.epsilon_spent)
    standalone = 2 * composed_epsilon(MECH, 1, DELTA) + composed_epsilon(noisier, 1, DELTA)
    assert ledger.epsilon_spent < standalone


def test_preview_tells_the_next_rounds_increment_before_it_runs() -> None:
    ledger = PrivacyLedger(100.0, DELTA)
    _fill(ledger, 3)
    charge = ledger.preview(MECH)
    assert charge.epsilon_before == ledger.epsilon_spent
    assert charge.epsilon_cumulative == pytest.approx(composed_epsilon(MECH, 4, DELTA))
    assert charge.epsilon_increment == pytest.approx(
        charge.epsilon_cumulative - charge.epsilon_before
    )
    assert ledger.entries[-1].round == 3  # preview records nothing


def test_abandoned_and_joined_rounds_cost_what_a_completed_one_does() -> None:
    completed, abandoned, joined = (PrivacyLedger(100.0, DELTA) for _ in range(3))
    completed.record(1, MECH, RoundOutcome.COMPLETED, 50)
    abandoned.record(1, MECH, RoundOutcome.ABANDONED, 3)
    joined.record(1, MECH, RoundOutcome.JOINED)
    assert completed.epsilon_spent == abandoned.epsilon_spent == joined.epsilon_spent > 0


def test_a_published_sum_below_calibration_is_charged_at_its_real_noise() -> None:
    short, full = PrivacyLedger(1e3, DELTA), PrivacyLedger(1e3, DELTA)
    short.record(1, MECH, RoundOutcome.COMPLETED, 10)
    full.record(1, MECH, RoundOutcome.COMPLETED, 80)
    assert short.epsilon_spent == pytest.approx(
        composed_epsilon(replace(MECH, calibrated_contributors=10), 1, DELTA)
    )
    assert short.epsilon_spent > full.epsilon_spent == composed_epsilon(MECH, 1, DELTA)


def test_rebuilding_from_entries_gives_identical_numbers_through_json_and_sqlite() -> None:
    ledger = PrivacyLedger(50.0, DELTA)
    sampled = replace(MECH, sampling=Sampling.poisson(0.02), bits=14)
    for number in range(1, 8):
        ledger.record(number, MECH, RoundOutcome.COMPLETED, 60)
    ledger.record(9, sampled, RoundOutcome.ABANDONED, 0)
    ledger.record(10, sampled, RoundOutcome.COMPLETED, 55)

    via_json = [LedgerEntry.from_dict(json.loads(json.dumps(e.to_dict()))) for e in ledger.entries]

    names = [f.name for f in fields(LedgerEntry)]
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE ledger ({', '.join(names)})")
    db.executemany(
        f"INSERT INTO ledger VALUES ({', '.join('?' * len(names))})",
        [tuple(e.to_dict()[n] for n in names) for e in ledger.entries],
    )
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM ledger ORDER BY round").fetchall()
    via_sqlite = [LedgerEntry.from_dict(dict(row)) for row in rows]

    for stored in (via_json, via_sqlite):
        rebuilt = PrivacyLedger.from_entries(50.0, DELTA, stored)
        assert rebuilt.entries == ledger.entries
        assert rebuilt.epsilon_spent == ledger.epsilon_spent
        assert rebuilt.preview(MECH) == ledger.preview(MECH)


def test_rebuild_rejects_tampered_reordered_or_foreign_entries() -> None:
    ledger = PrivacyLedger(50.0, DELTA)
    _fill(ledger, 3)
    entries = list(ledger.entries)
    tampered = [*entries[:2], replace(entries[2], epsilon_cumulative=0.1)]
    with pytest.raises(LedgerError, match="replay gives"):
        PrivacyLedger.from_entries(50.0, DELTA, tampered)
    with pytest.raises(LedgerError):
        PrivacyLedger.from_entries(50.0, DELTA, [entries[1], entries[0]])
    with pytest.raises(LedgerError, match="not after"):
        PrivacyLedger.from_entries(50.0, DELTA, [entries[0], replace(entries[1], round=0)])
    with pytest.raises(LedgerError, match="delta"):
        PrivacyLedger.from_entries(50.0, 1e-6, entries)
    with pytest.raises(LedgerError, match="mechanism"):
        PrivacyLedger.from_entries(50.0, DELTA, [replace(entries[0], mechanism="gaussian")])
    with pytest.raises(LedgerError, match="malformed"):
        LedgerEntry.from_dict({"round": 1})


def test_recording_a_round_again_is_idempotent_but_not_with_other_parameters() -> None:
    ledger = PrivacyLedger(50.0, DELTA)
    first = ledger.record(1, MECH, RoundOutcome.COMPLETED, 50)
    assert ledger.record(1, MECH, RoundOutcome.COMPLETED, 50) is first
    assert ledger.epsilon_spent == first.epsilon_cumulative
    with pytest.raises(LedgerError, match="already recorded"):
        ledger.record(1, MECH, RoundOutcome.ABANDONED, 50)
    with pytest.raises(LedgerError, match="not after"):
        ledger.record(0, MECH, RoundOutcome.COMPLETED, 50)


def test_a_worker_with_a_tighter_budget_refuses_before_the_federation_does() -> None:
    federation = PrivacyLedger(20.0, DELTA)
    worker = PrivacyLedger(8.0, DELTA)
    joined = 0
    for number in range(1, 200):
        federation.check(MECH)
        try:
            worker.check(MECH)
        except BudgetExceededError:
            break
        worker.record(number, MECH, RoundOutcome.JOINED)
        federation.record(number, MECH, RoundOutcome.COMPLETED, 50)
        joined += 1
    assert joined == PrivacyLedger(8.0, DELTA).rounds_left(MECH)
    assert worker.epsilon_spent <= 8.0 < composed_epsilon(MECH, joined + 1, DELTA)
    assert federation.check(MECH).allowed


def test_gaussian_reference_matches_an_independent_rdp_accountant() -> None:
    ledger = PrivacyLedger(1e3, DELTA)
    _fill(ledger, 30)
    reference = ledger.gaussian_reference(with_pld=False)
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(
        dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(MECH.noise_multiplier), 30)
    )
    assert reference.epsilon_rdp == pytest.approx(accountant.get_epsilon(DELTA), abs=1e-6)
    assert reference.epsilon_rdp < ledger.epsilon_spent
