"""Crypto suite: bytes and time per role for every profile, against baselines from the same run."""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.harness import (
    BenchmarkError,
    Measurement,
    RunContext,
    Stopwatch,
    Target,
    measurement,
    repeat_ms,
    time_ms,
)
from bench.suites import Suite

MEMBERS = 5
THRESHOLD = 3
MILLION = 1_000_000
# CKKS at scale 2^40: one encryption errs by about 1e-9 here (notes/openfhe-study.md §5), so
# a sum of 100 stays near 1e-8. 1e-6 leaves two orders of magnitude and still catches a broken
# scale, a wrong key or a dropped ciphertext, all of which err by far more.
CKKS_TOLERANCE = 1e-6
TENSEAL_SLOTS = 4096

SECTION = "DESIGN.md §12"
# The generic rows of DESIGN.md §12 name no profile, so they apply to every profile that has no
# tighter row of its own (fast and provable); oneshot has its own, tighter row.
WORKER_TARGET = Target("<=", 100.0, f"{SECTION}: worker crypto time per 1M params, one core")
COORDINATOR_TARGET = Target("<=", 12.0, f"{SECTION}: coordinator time per upload per 1M params")

TENSEAL = "crypto.tenseal_ckks"
FP32 = "crypto.plaintext_fp32"
FAST = "crypto.fast"


@dataclass(frozen=True)
class Scale:
    """How big a run is."""

    parameters: int
    clients: int
    repeats: int

    @property
    def per_million(self) -> float:
        """Factor that turns a cost for ``parameters`` into a cost per 1M parameters."""
        return MILLION / self.parameters


FULL = Scale(parameters=MILLION, clients=100, repeats=5)
QUICK = Scale(parameters=200_000, clients=20, repeats=3)


def _rng() -> np.random.Generator:
    # Fresh OS entropy per run: the figures must not depend on one lucky vector.
    return np.random.default_rng(int.from_bytes(os.urandom(8), "little"))


def _scaled(samples: list[float], factor: float) -> list[float]:
    return [s * factor for s in samples]


def _run_note(scale: Scale) -> str:
    return f"{scale.parameters:,} parameters, {scale.clients} clients"


# --------------------------------------------------------------------------- plaintext


def _plaintext(scale: Scale, ctx: RunContext) -> list[Measurement]:
    from crypto import model_payload, plaintext_update

    delta = _rng().normal(0.0, 0.01, scale.parameters).astype(np.float32)
    fp32 = plaintext_update.encode(delta)
    if plaintext_update.decode(fp32, scale.parameters).tobytes() != delta.tobytes():
        raise BenchmarkError("plaintext fp32 payload does not round-trip")
    step, quantized = model_payload.quantize_difference(delta, 8)
    correction = model_payload.Correction(
        0, 1, 8, step, hashlib.sha256(b"bench").digest(), quantized
    )
    int8 = model_payload.encode_correction(correction)
    if not np.array_equal(model_payload.decode_correction(int8).quantized, quantized):
        raise BenchmarkError("plaintext int8 payload does not round-trip")
    ctx.log(f"  plaintext fp32 {len(fp32):,} B, int8 {len(int8):,} B")
    return [
        measurement(
            f"{FP32}.upload_bytes_per_param",
            [len(fp32) / scale.parameters],
            "B/param",
            "plaintext float32 upload (crypto/plaintext_update.encode), header included",
            notes="4 by construction plus a 20-byte header; deterministic, one sample.",
        ),
        measurement(
            "crypto.plaintext_int8.upload_bytes_per_param",
            [len(int8) / scale.parameters],
            "B/param",
            "plaintext 8-bit quantized vector, header included",
            baseline=f"{FP32}.upload_bytes_per_param",
            notes=(
                "hefl has no int8 plaintext upload format; this is the int8 correction format "
                "of crypto/model_payload (80-byte header, one byte per value), the project's "
                "serializer for an 8-bit quantized vector. Deterministic, one sample."
            ),
        ),
    ]


# --------------------------------------------------------------------------- TenSEAL


def _tenseal() -> Any:
    # TenSEAL ships no type stubs; it is used only here, through this untyped handle.
    try:
        return importlib.import_module("tenseal")
    except ImportError as error:
        raise BenchmarkError(
            "tenseal is missing: install the bench extra (pip install -e '.[bench]')"
        ) from error


def _tenseal_ckks(scale: Scale, ctx: RunContext) -> list[Measurement]:
    ts = _tenseal()
    # NVIDIA FLARE's HEBuilder settings (notes/openfhe-study.md §5); one thread so the figures
    # are one-core figures like every other profile's (n_threads=2 changed nothing there).
    client_ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=8192,
        coeff_mod_bit_sizes=[60, 40, 40],
        encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
        n_threads=1,
    )
    client_ctx.global_scale = 2**40
    client_ctx.generate_relin_keys()
    # The server gets what NVFLARE gives it: relinearization keys, no secret key.
    server_ctx = ts.context_from(
        client_ctx.serialize(
            save_public_key=False,
            save_secret_key=False,
            save_galois_keys=False,
            save_relin_keys=True,
        ),
        n_threads=1,
    )
    rng = _rng()
    chunks = range(0, scale.parameters, TENSEAL_SLOTS)

    def encrypt(values: npt.NDArray[np.float64]) -> list[bytes]:
        return [
            ts.ckks_vector(client_ctx, values[i : i + TENSEAL_SLOTS].tolist()).serialize()
            for i in chunks
        ]

    encrypt(rng.normal(0.0, 0.01, scale.parameters))  # warm-up: first encodes build tables
    expected = np.zeros(scale.parameters)
    worker, coordinator = Stopwatch(), Stopwatch()
    upload_bytes: set[int] = set()
    aggregate: list[Any] = []
    for client in range(scale.clients):
        values = rng.normal(0.0, 0.01, scale.parameters)
        expected += values
        with worker.timing():
            blobs = encrypt(values)
        upload_bytes.add(sum(len(b) for b in blobs))
        with coordinator.timing():
            vectors = [ts.ckks_vector_from(server_ctx, b) for b in blobs]
            if client == 0:
                aggregate = vectors
            else:
                for total, vector in zip(aggregate, vectors, strict=True):
                    total.add_(vector)
        del blobs, vectors
    for total in aggregate:
        total.link_context(client_ctx)

    def decrypt() -> npt.NDArray[np.float64]:
        return np.concatenate([np.asarray(v.decrypt(), dtype=np.float64) for v in aggregate])

    decrypt_samples, decrypted = repeat_ms(decrypt, scale.repeats, warmup=1)
    error = float(np.max(np.abs(decrypted - expected)))
    if decrypted.shape != expected.shape or not error <= CKKS_TOLERANCE:
        raise BenchmarkError(
            f"TenSEAL CKKS sum of {scale.clients} is off by {error:.3g} (> {CKKS_TOLERANCE})"
        )
    size = max(upload_bytes)
    ctx.log(f"  tenseal: {size:,} B/upload, max abs error {error:.2e}")
    f = scale.per_million
    return [
        measurement(
            f"{TENSEAL}.upload_bytes_per_param",
            [size / scale.parameters],
            "B/param",
            "TenSEAL CKKS (NVFLARE settings): serialized ckks_vectors of 4096 values",
            baseline=f"{FP32}.upload_bytes_per_param",
            notes="Sum of ckks_vector.serialize() lengths; no framing counted (generous).",
        ),
        measurement(
            f"{TENSEAL}.worker_encrypt_ms_per_1m",
            _scaled(worker.samples, f),
            "ms",
            "TenSEAL client: ckks_vector (encode + encrypt) + serialize, per 1M params",
            notes=f"Median over {len(worker.samples)} clients ({_run_note(scale)}).",
        ),
        measurement(
            f"{TENSEAL}.coordinator_ms_per_upload_per_1m",
            _scaled(coordinator.samples, f),
            "ms",
            "TenSEAL server: deserialize (server context) + add_ one upload, per 1M params",
            notes=f"Median over the {len(coordinator.samples)} uploads of one aggregate.",
        ),
        measurement(
            f"{TENSEAL}.decrypt_ms",
            _scaled(decrypt_samples, f),
            "ms",
            "TenSEAL: decrypt the aggregate with the shared secret key, per 1M params",
            notes=(
                f"{len(decrypt_samples)} repetitions after one warm-up. In NVFLARE every client "
                "holds this secret key; there is no threshold decryption to compare."
            ),
        ),
        measurement(
            f"{TENSEAL}.max_abs_error",
            [error],
            "abs",
            f"TenSEAL: largest absolute error of the decrypted sum of {scale.clients}",
            notes=f"Values N(0, 0.01); the run fails above {CKKS_TOLERANCE:g}.",
        ),
    ]


# --------------------------------------------------------------------------- BGV / BFV


def _bgv_keys(hectx: Any, committee: Any) -> tuple[dict[int, Any], bytes]:
    from crypto.bgv import MemberSecrets, combine_public_shares

    seed = os.urandom(32)
    members = {i: MemberSecrets.generate(hectx, committee, i, seed) for i in committee.members}
    shares = {i: m.public_share for i, m in members.items()}
    joint: bytes = combine_public_shares(hectx, committee, members[1].crs_blob, shares)
    for member in members.values():
        member.accept_joint_key(shares, joint)
    return members, joint


def _bgv(name: str, scale: Scale, ctx: RunContext, *, bits: int) -> list[Measurement]:
    from crypto.bgv import (
        PROFILES,
        Aggregator,
        Committee,
        DecryptionPlan,
        Encryptor,
        Fuser,
        ciphertext_count,
        encode_payload,
        open_context,
        pack_fields,
        partial_decrypt,
        unpack_fields,
    )

    profile = PROFILES[name]
    start_ms, hectx = time_ms(lambda: open_context(profile))
    ctx.log(f"  {name}: context and self-test {start_ms:.0f} ms")
    committee = Committee(MEMBERS, THRESHOLD)
    members, joint = _bgv_keys(hectx, committee)
    radix, fields = profile.radix(bits), profile.fields_per_slot(bits)
    per_upload = ciphertext_count(hectx, -(-scale.parameters // fields))
    encryptor = Encryptor(hectx, joint)
    aggregator = Aggregator(hectx, joint, ciphertexts_per_upload=per_upload)
    lane = aggregator.lane()
    rng = _rng()

    def upload(update: npt.NDArray[np.int64]) -> bytes:
        return encode_payload(encryptor.encrypt(pack_fields(update, radix, fields)))

    upload(rng.integers(0, 1 << bits, scale.parameters, dtype=np.int64))  # warm-up
    expected = np.zeros(scale.parameters, dtype=np.int64)
    worker, coordinator = Stopwatch(), Stopwatch()
    sizes: set[int] = set()
    for client in range(scale.clients):
        update = rng.integers(0, 1 << bits, scale.parameters, dtype=np.int64)
        expected += update
        with worker.timing():
            payload = upload(update)
        sizes.add(len(payload))
        with coordinator.timing():
            lane.add_payload(f"client-{client:03d}", payload)
        del payload
    result = aggregator.finish()
    if len(result.contributors) != scale.clients:
        raise BenchmarkError(f"{name}: aggregate counts {len(result.contributors)} uploads")

    plan = DecryptionPlan.make(committee, committee.members)
    member_ms: list[float] = []
    partials = {}
    for index in committee.members:
        ms, partials[index] = time_ms(
            functools.partial(
                partial_decrypt, members[index], plan, result.ciphertexts, result.digest
            )
        )
        member_ms.append(ms)
    partial_bytes = sum(len(b) for b in partials[plan.lead].own)
    fuser = Fuser(hectx, members[1].crs_blob, result.ciphertexts)

    def open_sum() -> npt.NDArray[np.int64]:
        return unpack_fields(fuser.fuse(plan, partials), radix, fields, scale.parameters)

    round_samples, summed = repeat_ms(open_sum, scale.repeats)
    if not np.array_equal(summed, expected):
        wrong = int(np.count_nonzero(summed != expected))
        raise BenchmarkError(f"{name}: {wrong} of {scale.parameters} decrypted sums are wrong")
    if len(sizes) != 1:
        raise BenchmarkError(f"{name}: uploads of different sizes {sorted(sizes)}")
    size = sizes.pop()
    ctx.log(
        f"  {name}: exact; {per_upload} ciphertexts, {size:,} B/upload, "
        f"partials {partial_bytes:,} B/member"
    )
    key, f = f"crypto.{name}", scale.per_million
    bytes_target = (
        Target("<=", 8.2, f"{SECTION}: fast profile, b=8, 100 clients")
        if name == "fast"
        else Target("<=", 16.0, f"{SECTION}: provable profile")
    )
    flooding = (
        " DESIGN.md's reference for provable is naive flooding at 48 B/param (not built here)."
        if name == "provable"
        else ""
    )
    scheme = "BGV" if profile.scheme.name == "BGV" else "BFV"
    what = f"{name} ({scheme}, N={hectx.ring_dimension}, b={bits}, {fields} fields/slot)"
    return [
        measurement(
            f"{key}.upload_bytes_per_param",
            [size / scale.parameters],
            "B/param",
            f"{what}: payload-v1 upload",
            target=bytes_target,
            baseline=f"{TENSEAL}.upload_bytes_per_param",
            notes=(
                f"{per_upload} ciphertexts with 4-byte frame headers; packing radix sized for "
                f"{profile.max_summands} summands (production size). The last ciphertext is "
                f"zero-padded, which costs most at small models.{flooding}"
            ),
        ),
        measurement(
            f"{key}.worker_encrypt_ms_per_1m",
            _scaled(worker.samples, f),
            "ms",
            f"{what}: pack + encode + encrypt + serialize + frame one upload, per 1M params",
            target=WORKER_TARGET,
            baseline=f"{TENSEAL}.worker_encrypt_ms_per_1m",
            notes=(
                f"Median over all {len(worker.samples)} clients of the round (one warm-up "
                "upload first). Excludes the codec (see crypto.codec.*). Most of it is "
                "OpenFHE's MakePackedPlaintext and Encrypt, about 0.8 and 1.1 ms per "
                "ciphertext on the reference VM (docs/crypto-bgv.md §9)."
            ),
        ),
        measurement(
            f"{key}.coordinator_ms_per_upload_per_1m",
            _scaled(coordinator.samples, f),
            "ms",
            f"{what}: parse frames, shape-check, deserialize, add one upload, per 1M params",
            target=COORDINATOR_TARGET,
            baseline=f"{TENSEAL}.coordinator_ms_per_upload_per_1m",
            notes=(
                f"Median over the {len(coordinator.samples)} uploads of one aggregate; mostly "
                "OpenFHE deserialization (docs/crypto-bgv.md §9)."
            ),
        ),
        measurement(
            f"{key}.member_ms_per_1m",
            _scaled(member_ms, f),
            "ms",
            f"{what}: one member's partial decryption of the aggregate, per 1M params",
            baseline=f"{TENSEAL}.decrypt_ms",
            notes=(
                f"Median over the {MEMBERS} members of a {THRESHOLD}-of-{MEMBERS} committee, "
                "all present (one lead, four main partials); includes digest, shape checks and "
                f"canonical serialization. {partial_bytes:,} B of partials per member."
            ),
        ),
        measurement(
            f"{key}.coordinator_round_ms",
            _scaled(round_samples, f),
            "ms",
            f"{what}: fuse {MEMBERS} members' partials + unpack, once per round, per 1M params",
            notes=f"{len(round_samples)} repetitions; the result is checked bit-exact.",
        ),
    ]


def _fast(scale: Scale, ctx: RunContext) -> list[Measurement]:
    return _bgv("fast", scale, ctx, bits=8)


def _provable(scale: Scale, ctx: RunContext) -> list[Measurement]:
    return _bgv("provable", scale, ctx, bits=8)


# --------------------------------------------------------------------------- oneshot


def _descriptor(params: Any, parameter_count: int) -> bytes:
    from crypto.oneshot import params_to_proto
    from hefl.v1 import common_pb2

    # Signatures are the committee's business and cost nothing per parameter; the binding only
    # needs the descriptor bytes.
    data: bytes = common_pb2.RoundDescriptor(
        federation_id="bench",
        round_number=1,
        seed=os.urandom(32),
        committee_epoch=1,
        profile=common_pb2.CRYPTO_PROFILE_ONESHOT,
        codec=common_pb2.CodecParams(
            bits=params.bits,
            sum_mode=common_pb2.SumMode.ValueType(int(params.mode)),
            parameter_count=parameter_count,
            max_summands=params.max_summands,
            oneshot=params_to_proto(params),
        ),
    ).SerializeToString()
    return data


def _oneshot(scale: Scale, ctx: RunContext) -> list[Measurement]:
    from crypto import sealing
    from crypto.oneshot import (
        Contribution,
        MaskedSum,
        MemberKey,
        OneshotParams,
        RoundBinding,
        SumMode,
        UsedRounds,
        combine_key_sum,
        mask_update,
        open_share_sum,
        unmask_sum,
    )
    from hefl.v1 import common_pb2

    bits = 16
    params = OneshotParams.create(SumMode.MOD, bits, 100)
    binding = RoundBinding(_descriptor(params, scale.parameters))
    keys = [sealing.SealingKey.generate() for _ in range(MEMBERS)]
    members = [MemberKey(i + 1, k.public_bytes) for i, k in enumerate(keys)]
    rng = _rng()

    def mask(fields: npt.NDArray[np.uint64], worker_id: str) -> Any:
        # A fresh UsedRounds per client: each client keeps its own record of rounds.
        return mask_update(
            binding,
            params,
            fields,
            UsedRounds(),
            members=members,
            threshold=THRESHOLD,
            worker_id=worker_id,
        )

    mask(rng.integers(0, 1 << bits, scale.parameters, dtype=np.uint64), "warm-up")
    total = MaskedSum(params, scale.parameters)
    expected = np.zeros(scale.parameters, dtype=np.uint64)
    worker, coordinator = Stopwatch(), Stopwatch()
    sizes: set[tuple[int, int]] = set()
    contributions: dict[int, list[Any]] = {i: [] for i in range(1, MEMBERS + 1)}
    for client in range(scale.clients):
        worker_id = f"client-{client:03d}"
        fields = rng.integers(0, 1 << bits, scale.parameters, dtype=np.uint64)
        expected += fields
        with worker.timing():
            masked = mask(fields, worker_id)
        boxes = [
            common_pb2.SealedBox(
                recipient_index=s.member_index,
                ephemeral_public_key=s.sealed.ephemeral_public_key,
                nonce=s.sealed.nonce,
                ciphertext=s.sealed.ciphertext,
            ).SerializeToString()
            for s in masked.sealed_shares
        ]
        sizes.add((len(masked.payload), sum(len(b) for b in boxes)))
        with coordinator.timing():
            total.add(masked.payload)
        for share in masked.sealed_shares:
            contributions[share.member_index].append(
                Contribution(worker_id, masked.payload_sha256, share.sealed)
            )
        del masked

    member_ms: list[float] = []
    openings = {}
    for index in range(1, MEMBERS + 1):
        ms, openings[index] = time_ms(
            functools.partial(
                open_share_sum,
                keys[index - 1],
                index,
                binding,
                contributions[index],
                ring_dimension=params.ring_dimension,
            )
        )
        member_ms.append(ms)

    def open_sum() -> npt.NDArray[np.uint64]:
        # All five openings: combine_key_sum checks the spare two against the first three.
        key_sum = combine_key_sum(
            openings, threshold=THRESHOLD, contributors=scale.clients, params=params
        )
        return unmask_sum(binding, total, key_sum)

    round_samples, summed = repeat_ms(open_sum, scale.repeats)
    expected &= np.uint64((1 << bits) - 1)
    if not np.array_equal(summed, expected):
        wrong = int(np.count_nonzero(summed != expected))
        raise BenchmarkError(f"oneshot: {wrong} of {scale.parameters} unmasked sums are wrong")
    if len(sizes) != 1:
        raise BenchmarkError(f"oneshot: uploads of different sizes {sorted(sizes)}")
    payload_bytes, box_bytes = sizes.pop()
    ctx.log(f"  oneshot: exact; {payload_bytes:,} B payload + {box_bytes:,} B sealed shares")
    key, f = "crypto.oneshot", scale.per_million
    what = (
        f"oneshot (RLWE n={params.ring_dimension}, q=2^{params.modulus_bits}, "
        f"q'=2^{params.rounded_modulus_bits}, b={bits} mod)"
    )
    return [
        measurement(
            f"{key}.upload_bytes_per_param",
            [(payload_bytes + box_bytes) / scale.parameters],
            "B/param",
            f"{what}: masked payload + {MEMBERS} serialized SealedBox messages",
            target=Target("<=", 3.05, f"{SECTION}: oneshot profile, b=16, 1M params"),
            baseline=f"{FP32}.upload_bytes_per_param",
            notes=(
                f"{payload_bytes:,} B payload + {box_bytes:,} B sealed key shares per upload. "
                "The signed UploadStatement (protocol layer) is not counted."
            ),
        ),
        measurement(
            f"{key}.worker_ms_per_1m",
            _scaled(worker.samples, f),
            "ms",
            f"{what}: mask_update (expand a, a*s, error, round, pack, seal shares), per 1M",
            target=Target("<=", 50.0, f"{SECTION}: oneshot worker time per 1M params"),
            baseline=f"{FAST}.worker_encrypt_ms_per_1m",
            notes=(
                f"Median over all {len(worker.samples)} clients (one warm-up first). Excludes "
                "the codec (see crypto.codec.*)."
            ),
        ),
        measurement(
            f"{key}.coordinator_ms_per_upload_per_1m",
            _scaled(coordinator.samples, f),
            "ms",
            f"{what}: MaskedSum.add of one upload (decode + add), per 1M params",
            target=Target("<=", 5.0, f"{SECTION}: oneshot coordinator time per upload"),
            baseline=f"{FAST}.coordinator_ms_per_upload_per_1m",
            notes=f"Median over the {len(coordinator.samples)} uploads of one aggregate.",
        ),
        measurement(
            f"{key}.member_ms_per_1m",
            member_ms,
            "ms",
            f"{what}: one member's open_share_sum over {scale.clients} sealed shares",
            target=Target("<=", 5.0, f"{SECTION}: oneshot member time per 1M params"),
            baseline=f"{FAST}.member_ms_per_1m",
            notes=(
                f"Median over the {MEMBERS} members. Not scaled with the model: a member opens "
                "one 2048-coefficient share per contribution whatever the model size, so this "
                f"is the member's cost per round with {scale.clients} contributors. It grows "
                "with contributors, not parameters: one X25519 + HKDF + ChaCha20-Poly1305 open "
                "and a share decode per contribution."
            ),
        ),
        measurement(
            f"{key}.member_ms_per_contribution",
            [ms / scale.clients for ms in member_ms],
            "ms",
            f"{what}: one member's open_share_sum time divided by the contributors",
            notes=f"The member figure above over {scale.clients}; what a bigger round costs.",
        ),
        measurement(
            f"{key}.coordinator_round_ms",
            _scaled(round_samples, f),
            "ms",
            f"{what}: combine_key_sum ({MEMBERS} openings) + unmask_sum, per round, per 1M",
            baseline=f"{FAST}.coordinator_round_ms",
            notes=f"{len(round_samples)} repetitions; the result is checked bit-exact.",
        ),
    ]


# --------------------------------------------------------------------------- codec


def _codec(scale: Scale, ctx: RunContext) -> list[Measurement]:
    from crypto.codec import (
        CodecConfig,
        encode,
        exact_mode_scale,
        local_noise_variance,
        modular_sum_scale,
        rotation_for,
    )

    rng = _rng()
    delta = rng.normal(0.0, 1e-3, scale.parameters).astype(np.float32)
    probe = CodecConfig(
        bits=8,
        sum_mode="exact",
        clip_norm=1.0,
        scale=1.0,
        parameter_count=scale.parameters,
        max_summands=100,
    )
    padded = probe.padded_length
    exact8 = CodecConfig(
        bits=8,
        sum_mode="exact",
        clip_norm=1.0,
        scale=exact_mode_scale(8, 1.0, padded),
        parameter_count=scale.parameters,
        max_summands=100,
    )
    # Noise std per coordinate equal to a clipped update's spread: a DP-heavy setting.
    sigma = 1.0 / np.sqrt(padded)
    s16 = modular_sum_scale(16, 1.0, padded, 100, local_noise_std=sigma)
    mod16 = CodecConfig(
        bits=16,
        sum_mode="mod",
        clip_norm=1.0,
        scale=s16,
        parameter_count=scale.parameters,
        max_summands=100,
        local_noise_variance=local_noise_variance(sigma, s16),
    )
    out: list[Measurement] = []
    for label, config in (("b8_exact", exact8), ("b16_mod_noise", mod16)):
        rotation = rotation_for(config, b"bench-rotation-seed")
        samples, encoded = repeat_ms(
            functools.partial(encode, delta, config, rotation), scale.repeats
        )
        if encoded.fields.shape != (config.field_count,):
            raise BenchmarkError(f"codec {label}: {encoded.fields.shape} fields")
        ctx.log(f"  codec {label}: {config.field_count:,} fields")
        noise = (
            f", Skellam variance {config.local_noise_variance:.0f} per coordinate"
            if config.local_noise_variance
            else ", no noise"
        )
        out.append(
            measurement(
                f"crypto.codec.encode_{label}_ms_per_1m",
                _scaled(samples, scale.per_million),
                "ms",
                f"codec encode (clip, rotate, scale, round{noise}), b={config.bits} "
                f"{config.sum_mode}, per 1M params",
                notes=(
                    f"{len(samples)} repetitions on one update; the rotation is built once per "
                    f"round and not timed. {config.field_count:,} fields for "
                    f"{scale.parameters:,} parameters (rotation padding + 2 counters)."
                ),
            )
        )
    return out


# --------------------------------------------------------------------------- suite

Part = Callable[[Scale, RunContext], list[Measurement]]
PARTS: dict[str, Part] = {
    "plaintext": _plaintext,
    "tenseal_ckks": _tenseal_ckks,
    "fast": _fast,
    "provable": _provable,
    "oneshot": _oneshot,
    "codec": _codec,
}


def run(quick: bool, ctx: RunContext) -> list[Measurement]:
    """Runs the selected parts at full (1M parameters, 100 clients) or quick scale."""
    scale = QUICK if quick else FULL
    out: list[Measurement] = []
    for name, part in PARTS.items():
        if ctx.wants(name):
            ctx.log(f"crypto.{name}: {_run_note(scale)}")
            ms, measured = time_ms(functools.partial(part, scale, ctx))
            ctx.log(f"crypto.{name}: done in {ms / 1e3:.1f} s")
            out.extend(measured)
    return out


NOTES = """\
**Method.** Everything runs in one process on one core (`OMP_NUM_THREADS=1`, TenSEAL
`n_threads=1`), after start-up (contexts, key ceremony and self-tests are not timed). Each
profile runs one real round: every client's update is a fresh random vector (b-bit fields for
the integer profiles, N(0, 0.01) floats for CKKS), the client's upload is produced and timed,
and the coordinator adds it to the running aggregate at once (timed per upload), so every
upload of the round is both produced and aggregated. In full mode that is 1,000,000
parameters and 100 clients per profile: client and coordinator figures are medians over all
100. Members then open the aggregate (timed per member, median over the 5 members of a
3-of-5 committee, all present), the coordinator fuses or unmasks, and the suite checks the
opened sum against the plaintext sum: bit-exact for fast, provable and oneshot, within 1e-6
for CKKS. A wrong sum aborts the run; no figure is reported for a broken round.

**Normalisation.** `*_per_1m` figures are scaled linearly to 1M parameters; in full mode that
factor is 1. In quick mode (200,000 parameters, 20 clients) fixed costs and ciphertext padding
are scaled up too, so quick figures are smoke-test indications, not the figures to quote.
`crypto.oneshot.member_ms_per_1m` is not scaled: a member's work depends on the number of
contributors, not on the model size.

**Targets.** The worker (<= 100 ms) and coordinator (<= 12 ms) rows of DESIGN.md §12 name
no profile, so they are applied to fast and to provable; oneshot is judged by its own, tighter
row (50 / 5 / 5 ms). Byte targets are per profile. TenSEAL and plaintext are baselines only.
The machine is shared: the load average at start and end is in the table below, and a max far
above its median usually marks a moment of contention, which the median absorbs.

**What is not timed.** The codec (reported separately under `crypto.codec.*`), transport,
signatures of upload statements and of descriptors, key ceremonies, and waiting for windows.
Secure-round wall time, accuracy, memory and scaling belong to other suites.
"""

SUITE = Suite(
    name="crypto",
    description="upload bytes and per-role crypto time: fast, provable, oneshot vs TenSEAL CKKS",
    run=run,
    parts=tuple(PARTS),
    notes=NOTES,
)
