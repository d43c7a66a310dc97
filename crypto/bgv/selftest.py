"""Start-up: static guards, then an empirical threshold round that must decrypt exactly.

The static guards encode what the study measured; the self-test catches what they cannot (a new
wheel, a profile that slipped past them): a real committee with a dropout, fields at their
maximum summed ``max_summands`` times, and as many partial decryptions fused as a worst-case
recovery in the profile's largest committee produces.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from crypto import sealing
from crypto.bgv import native
from crypto.bgv.aggregate import Aggregator
from crypto.bgv.context import HeContext, create_context, load_context
from crypto.bgv.decrypt import DecryptionPlan, Fuser, fuse_partials, partial_decrypt
from crypto.bgv.encrypt import Encryptor
from crypto.bgv.errors import SelfTestError
from crypto.bgv.keys import Committee, MemberSecrets, combine_public_shares
from crypto.bgv.native import Native
from crypto.bgv.packing import pack_fields, unpack_fields
from crypto.bgv.params import BgvProfile
from crypto.bgv.shares import ShareCodec

_AGGREGATED_UPLOADS = 16
_verified: set[BgvProfile] = set()
_verified_lock = threading.Lock()


def worst_case_partials(committee_size: int) -> int:
    """Partials fused when a minimal majority decrypts for everyone else: t * (k - t + 1)."""
    threshold = committee_size // 2 + 1
    return threshold * (committee_size - threshold + 1)


def _round_keys(ctx: HeContext) -> tuple[Committee, list[MemberSecrets], bytes]:
    committee = Committee(size=3, threshold=2)
    seed = os.urandom(32)
    members = [MemberSecrets.generate(ctx, committee, i, seed) for i in committee.members]
    shares = {m.index: m.public_share for m in members}
    joint = combine_public_shares(ctx, committee, members[0].crs_blob, shares)
    boxes = {m.index: sealing.SealingKey.generate() for m in members}
    for member in members:
        member.accept_joint_key(shares, joint)
    for sender in members:
        recipients = {i: k.public_bytes for i, k in boxes.items() if i != sender.index}
        for recipient, box in sender.seal_shares(recipients, b"self-test").items():
            members[recipient - 1].receive_share(sender.index, box, boxes[recipient], b"self-test")
    return committee, members, joint


def run_self_test(ctx: HeContext, *, bits: int = 8) -> None:
    """One exact threshold round at the profile's limits, through the public facade.

    Raises:
        SelfTestError: if any slot decrypts wrong (the profile is unsafe on this build).
    """
    profile = ctx.profile
    # Federations choose b; with very many summands an 8-bit field may not fit at all, so the
    # test uses the widest field (up to ``bits``) that does.
    while bits > 1 and profile.radix(bits) > profile.plaintext_modulus:
        bits -= 1
    committee, members, joint = _round_keys(ctx)
    radix = profile.radix(bits)
    fields = profile.fields_per_slot(bits)
    field_values = np.full(fields * ctx.ring_dimension, (1 << bits) - 1, dtype=np.int64)
    field_values[:: 7 * fields] = 0  # a pattern, so a slot permutation cannot pass
    slots = pack_fields(field_values, radix, fields)
    (upload,) = list(Encryptor(ctx, joint).encrypt(slots))

    # The aggregator path with a few uploads, then double-and-add up to max_summands copies:
    # the noise of k identical summands is k times one (worse than k independent ones), and
    # this stays O(log k) however large a federation sets max_summands.
    through_aggregator = min(profile.max_summands, _AGGREGATED_UPLOADS)
    aggregator = Aggregator(ctx, joint, ciphertexts_per_upload=1)
    lane = aggregator.lane()
    for contributor in range(through_aggregator):
        lane.add_upload(f"self-test-{contributor}", [upload])
    (summed,) = aggregator.finish().ciphertexts
    total = _scaled(
        ctx,
        native.load_ciphertext(summed),
        native.load_ciphertext(upload),
        profile.max_summands,
        through_aggregator,
    )
    aggregate = (native.canonical_ciphertext(total),)

    plan = DecryptionPlan.make(committee, [1, 2])
    partials = {m.index: partial_decrypt(m, plan, aggregate) for m in members[:2]}
    # The real path (completeness and shape checks), then the same partials padded with
    # zero-key partials up to the worst-case count, which only adds decryption noise.
    planned = Fuser(ctx, members[0].crs_blob, aggregate).fuse(plan, partials)
    codec = ShareCodec.create(ctx, members[0].crs_blob)
    zero = codec.zero_key((1, 2), 3)
    padding = worst_case_partials(profile.max_committee) - 4
    extra = _zero_partials(ctx, aggregate[0], zero, padding)
    column = (
        partials[1].own[0],
        partials[2].own[0],
        *partials[1].recovered[3],
        *partials[2].recovered[3],
        *extra,
    )
    decrypted = fuse_partials(ctx, [column])
    expected = slots * profile.max_summands
    wrong = int(np.count_nonzero((decrypted != expected) | (planned != expected)))
    recovered_fields = unpack_fields(decrypted, radix, fields, field_values.size)
    if wrong or not np.array_equal(recovered_fields, field_values * profile.max_summands):
        raise SelfTestError(
            f"profile {profile.name!r}: {wrong} of {ctx.ring_dimension} slots wrong after "
            f"{profile.max_summands} sums and {len(column)} fused partials "
            f"(t = {profile.plaintext_modulus}, {profile.keygen_towers} tower(s)); "
            "this parameter set is not safe on this OpenFHE build"
        )


def _scaled(ctx: HeContext, base: Native, one: Native, target: int, base_count: int) -> Native:
    """``target`` copies of ``one``, starting from ``base`` = ``base_count`` copies."""
    cc = ctx.native
    result = base
    multiple, remainder = divmod(target, base_count)
    if multiple > 1:
        acc, power, k = None, base, multiple
        while k:
            if k & 1:
                acc = power if acc is None else cc.EvalAdd(acc, power)
            power = cc.EvalAdd(power, power)
            k >>= 1
        result = acc
    for _ in range(remainder):
        result = cc.EvalAdd(result, one)
    return result


def _zero_partials(ctx: HeContext, blob: bytes, zero_key: Native, count: int) -> list[bytes]:
    ciphertext = native.load_ciphertext(blob)
    return [
        native.serialize(ctx.native.MultipartyDecryptMain([ciphertext], zero_key)[0])
        for _ in range(max(count, 0))
    ]


def open_context(
    profile: BgvProfile,
    *,
    context_bytes: bytes | None = None,
    for_aggregation: bool = False,
    self_test: bool = True,
    check_static: bool = True,
) -> HeContext:
    """The start-up entry point: guards, context, and (once per process and profile) self-test.

    Args:
        profile: The configured profile.
        context_bytes: A received context to load (checked against the profile), or None to
            create it.
        for_aggregation: Coordinator: disable CRT precomputation on deserialization.
        self_test: Run the empirical round unless this profile already passed in this process.
        check_static: Only tests turn the static guards off.

    Raises:
        ProfileError: if a static guard or the realised layout refuses the profile.
        SelfTestError: if the empirical round is not exact.
    """
    if context_bytes is None:
        ctx = create_context(profile, check_static=check_static)
    else:
        ctx = load_context(
            profile, context_bytes, for_aggregation=for_aggregation, check_static=check_static
        )
    if self_test:
        with _verified_lock:
            if profile not in _verified:
                run_self_test(ctx)
                _verified.add(profile)
    return ctx
