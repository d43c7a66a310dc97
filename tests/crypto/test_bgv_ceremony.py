"""Key epoch: star key generation over the seeded CRS, sealed Shamir shares, member state."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from crypto import sealing
from crypto.bgv import (
    FAST,
    Committee,
    DecryptionPlan,
    Encryptor,
    Fuser,
    HeContext,
    KeyCeremonyError,
    MemberSecrets,
    PublicKeyShare,
    combine_public_shares,
    native,
    open_context,
    partial_decrypt,
)
from crypto.bgv.keys import _share_associated_data
from crypto.bgv.layout import find_towers

EPOCH = b"epoch-7"


@dataclass
class Ceremony:
    """Everything a finished key epoch leaves behind, plus every member->coordinator message."""

    ctx: HeContext
    committee: Committee
    seed: bytes
    members: dict[int, MemberSecrets]
    sealing_keys: dict[int, sealing.SealingKey]
    joint: bytes
    sent_to_coordinator: list[bytes] = field(default_factory=list)


def run_ceremony(ctx: HeContext, committee: Committee, seed: bytes | None = None) -> Ceremony:
    """Runs the whole epoch as the coordinator would relay it, recording what members send."""
    seed = os.urandom(32) if seed is None else seed
    members = {i: MemberSecrets.generate(ctx, committee, i, seed) for i in committee.members}
    sealing_keys = {i: sealing.SealingKey.generate() for i in committee.members}
    sent: list[bytes] = [k.public_bytes for k in sealing_keys.values()]
    commitments = {i: m.public_share.commitment() for i, m in members.items()}
    sent += commitments.values()
    shares = {i: m.public_share for i, m in members.items()}
    sent += [s.key for s in shares.values()]
    joint = combine_public_shares(ctx, committee, members[1].crs_blob, shares, commitments)
    for member in members.values():
        member.accept_joint_key(shares, joint, commitments)
    public = {i: k.public_bytes for i, k in sealing_keys.items()}
    for sender in members.values():
        recipients = {i: key for i, key in public.items() if i != sender.index}
        for recipient, box in sender.seal_shares(recipients, EPOCH).items():
            sent += [box.ephemeral_public_key, box.nonce, box.ciphertext]
            members[recipient].receive_share(sender.index, box, sealing_keys[recipient], EPOCH)
    return Ceremony(ctx, committee, seed, members, sealing_keys, joint, sent)


@pytest.fixture(scope="module")
def fast() -> HeContext:
    return open_context(FAST)


def test_every_member_holds_a_share_of_every_other_key(fast: HeContext) -> None:
    ceremony = run_ceremony(fast, Committee(5, 3))
    for index, member in ceremony.members.items():
        assert member.joint_public_key == ceremony.joint
        for other in ceremony.committee.members:
            assert member.has_share_from(other) == (other != index)


def test_members_refuse_a_joint_key_that_is_not_the_sum_of_the_shares(fast: HeContext) -> None:
    committee = Committee(3, 2)
    seed = os.urandom(32)
    members = {i: MemberSecrets.generate(fast, committee, i, seed) for i in committee.members}
    shares = {i: m.public_share for i, m in members.items()}
    joint = combine_public_shares(fast, committee, members[1].crs_blob, shares)
    # A coordinator that drops member 3's contribution (so it could decrypt with 2 keys).
    rogue = combine_public_shares(
        fast,
        Committee(2, 2),
        members[1].crs_blob,
        {1: shares[1], 2: shares[2]},
    )
    with pytest.raises(KeyCeremonyError, match="not the sum"):
        members[1].accept_joint_key(shares, rogue)
    members[1].accept_joint_key(shares, joint)
    assert members[1].joint_public_key == joint


def test_a_share_over_another_crs_or_breaking_its_commitment_is_refused(fast: HeContext) -> None:
    committee = Committee(3, 2)
    seed = os.urandom(32)
    members = {i: MemberSecrets.generate(fast, committee, i, seed) for i in committee.members}
    commitments = {i: m.public_share.commitment() for i, m in members.items()}
    shares = {i: m.public_share for i, m in members.items()}
    stranger = MemberSecrets.generate(fast, committee, 3, os.urandom(32))
    with pytest.raises(KeyCeremonyError, match="does not use the CRS"):
        combine_public_shares(
            fast, committee, members[1].crs_blob, {**shares, 3: stranger.public_share}
        )
    # Same CRS, but member 3 swapped its share after seeing the others (rogue key).
    late = MemberSecrets.generate(fast, committee, 3, seed).public_share
    with pytest.raises(KeyCeremonyError, match="commitment"):
        combine_public_shares(
            fast, committee, members[1].crs_blob, {**shares, 3: late}, commitments
        )
    with pytest.raises(KeyCeremonyError, match="own share"):
        members[3].accept_joint_key({**shares, 3: late}, b"")
    with pytest.raises(KeyCeremonyError, match="claims member"):
        combine_public_shares(
            fast, committee, members[1].crs_blob, {**shares, 3: PublicKeyShare(2, shares[3].key)}
        )


def test_share_boxes_open_only_for_their_recipient_and_epoch(fast: HeContext) -> None:
    committee = Committee(3, 2)
    seed = os.urandom(32)
    members = {i: MemberSecrets.generate(fast, committee, i, seed) for i in committee.members}
    keys = {i: sealing.SealingKey.generate() for i in committee.members}
    boxes = members[1].seal_shares({2: keys[2].public_bytes, 3: keys[3].public_bytes}, EPOCH)
    with pytest.raises(KeyCeremonyError):
        members[3].receive_share(1, boxes[2], keys[3], EPOCH)  # box for member 2
    with pytest.raises(KeyCeremonyError):
        members[2].receive_share(1, boxes[2], keys[2], b"another-epoch")
    with pytest.raises(KeyCeremonyError):
        members[2].receive_share(3, boxes[2], keys[2], EPOCH)  # claimed sender differs
    assert not members[2].has_share_from(1)
    members[2].receive_share(1, boxes[2], keys[2], EPOCH)
    assert members[2].has_share_from(1)


def test_a_garbled_share_inside_a_valid_box_is_refused(fast: HeContext) -> None:
    committee = Committee(3, 2)
    members = {i: MemberSecrets.generate(fast, committee, i, b"s" * 32) for i in committee.members}
    key = sealing.SealingKey.generate()
    box = sealing.seal(key.public_bytes, b"\x00" * 66348, _share_associated_data(EPOCH, 1, 2))
    with pytest.raises(KeyCeremonyError):
        members[2].receive_share(1, box, key, EPOCH)


def test_committee_must_be_a_majority_threshold() -> None:
    with pytest.raises(KeyCeremonyError, match="majority"):
        Committee(5, 2)
    with pytest.raises(KeyCeremonyError):
        Committee(5, 6)
    assert Committee(5, 3).members == (1, 2, 3, 4, 5)


def test_member_state_survives_a_restart(fast: HeContext, tmp_path: Path) -> None:
    ceremony = run_ceremony(fast, Committee(3, 2))
    path = tmp_path / "member2.state"
    ceremony.members[2].save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    restored = MemberSecrets.load(fast, path)
    original = ceremony.members[2]
    assert restored.secret_key_bytes() == original.secret_key_bytes()
    assert restored.joint_public_key == ceremony.joint
    assert restored.to_bytes() == original.to_bytes()
    # The restored member (own key and a received share) still decrypts with member 1, with
    # member 3 dropped: its Lagrange partial uses the reloaded share of member 3's key.
    slots = np.arange(fast.ring_dimension, dtype=np.int64) * 3
    aggregate = list(Encryptor(fast, ceremony.joint).encrypt(slots))
    plan = DecryptionPlan.make(ceremony.committee, [1, 2])
    partials = {
        1: partial_decrypt(ceremony.members[1], plan, aggregate),
        2: partial_decrypt(restored, plan, aggregate),
    }
    out = Fuser(fast, ceremony.members[1].crs_blob, aggregate).fuse(plan, partials)
    assert np.array_equal(out, slots)


def test_corrupt_member_state_is_refused(fast: HeContext) -> None:
    ceremony = run_ceremony(fast, Committee(3, 2))
    blob = ceremony.members[1].to_bytes()
    with pytest.raises(KeyCeremonyError):
        MemberSecrets.from_bytes(fast, blob[:-10])
    with pytest.raises(KeyCeremonyError):
        MemberSecrets.from_bytes(fast, b"junk" + blob)


def _secret_needles(member: MemberSecrets) -> list[bytes]:
    """Windows of the member's secret-key coefficients, and its whole serialized key."""
    blob = member.secret_key_bytes()
    towers = find_towers(blob, member.ctx.ring_dimension)
    assert towers, "secret key has coefficient blocks"
    needles = [blob]
    for tower in towers:
        for start in (0, 4096, 8 * member.ctx.ring_dimension - 64):
            needles.append(blob[tower.offset + start : tower.offset + start + 64])
    return needles


def test_nothing_a_member_sends_the_coordinator_contains_secret_key_bytes(
    fast: HeContext,
) -> None:
    ceremony = run_ceremony(fast, Committee(5, 3))
    slots = np.full(fast.ring_dimension, 7, dtype=np.int64)
    aggregate = list(Encryptor(fast, ceremony.joint).encrypt(slots))
    plan = DecryptionPlan.make(ceremony.committee, [1, 2, 3])
    partials = {i: partial_decrypt(ceremony.members[i], plan, aggregate) for i in plan.participants}
    messages = ceremony.sent_to_coordinator + [b for p in partials.values() for b in p.blobs()]
    # And what the coordinator itself produces and hands on.
    messages += [ceremony.joint, *aggregate, ceremony.members[1].crs_blob]
    out = Fuser(fast, ceremony.members[1].crs_blob, aggregate).fuse(plan, partials)
    assert np.array_equal(out, slots)
    for member in ceremony.members.values():
        needles = _secret_needles(member)
        # Received Shamir shares are key material too: only their sealed form may travel.
        needles += [member._received[j] for j in sorted(member._received)]
        for message in messages:
            for needle in needles:
                assert needle not in message


def _coefficients(blob: bytes, member: MemberSecrets) -> list[int]:
    # Share containers have one fixed layout; read its single tower block.
    (tower,) = member._codec.shape.towers
    n = member.ctx.ring_dimension
    return [int(v) for v in np.frombuffer(blob, dtype="<u8", count=n, offset=tower.offset)]


def test_shamir_shares_are_reduced_so_they_do_not_reveal_secret_coefficients(
    fast: HeContext,
) -> None:
    ceremony = run_ceremony(fast, Committee(5, 3))
    dealer = ceremony.members[1]
    q = fast.tower_moduli[0]
    n = fast.ring_dimension
    delivered = {j: ceremony.members[j]._received[1] for j in (2, 3, 4)}
    values = {j: _coefficients(blob, dealer) for j, blob in delivered.items()}
    assert all(v < q for vs in values.values() for v in vs)
    # Interpolating the delivered shares still gives the dealer's secret (ternary: 0, 1, -1).
    weights = {2: 6, 3: -8, 4: 3}  # Lagrange weights at 0 over the points 2, 3, 4
    secret = [sum(weights[j] * values[j][d] for j in values) % q for d in range(n)]
    assert set(secret) <= {0, 1, q - 1}
    # What OpenFHE itself returns is lazily reduced: values >= q sit exactly on secret -1s.
    raw = fast.native.ShareKeys(dealer.secret_key, 5, 3, 1, "shamir")[2]
    container = dealer._codec.template.Clone()
    container.SetElements([raw])
    raw_values = _coefficients(native.canonical_ciphertext(container), dealer)
    leaked = [d for d, v in enumerate(raw_values) if v >= q]
    assert leaked, "OpenFHE reduced its shares itself; the workaround may be dropped"
    assert all(secret[d] == q - 1 for d in leaked)
