"""Byte format v1 of a masked upload: kp bits per used coefficient, streamed block by block.

Header, 16 bytes (integers little-endian)::

    offset 0   4 bytes  magic b"HFOS"
    offset 4   u8       format version, 1
    offset 5   u8       sum mode (1 mod, 2 exact, 3 approx; as hefl.v1.SumMode)
    offset 6   u8       kp = log2 q', bits per coefficient (1..64)
    offset 7   u8       log2 n, ring dimension
    offset 8   u64      D, parameter count (>= 1)

Body: blocks j = 0 .. B-1, B = ceil(D / n), in order. Block j carries c_j = min(n, D - j n)
values (only the D used coefficients travel). With w = floor(kp / 8) and r = kp mod 8, a block is

    low   c_j * w bytes               value i's low 8w bits, little-endian, at bytes [w i, w i + w)
    high  ceil(c_j * r / 8) bytes     value i's top r bits at bit offset r i of the little-endian
                                      bit string (bit b of byte y is bit 8 y + b); spare bits of
                                      the last byte are zero

Full blocks are n w + n r / 8 bytes. The total size is fixed by the header; a decoder rejects
any other length, a header that does not match the round's parameters, and non-zero spare bits.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crypto.oneshot.params import OneshotParams, SumMode

MAGIC = b"HFOS"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sBBBBQ")
HEADER_BYTES = _HEADER.size
_GROUP = 8


class WireError(ValueError):
    """A payload is truncated, oversized, garbled or made for other parameters."""


@dataclass(frozen=True)
class PayloadHeader:
    """The fixed 16-byte header of a v1 payload."""

    mode: SumMode
    rounded_modulus_bits: int
    log_ring_dimension: int
    parameter_count: int

    def encode(self) -> bytes:
        """Serializes the header."""
        return _HEADER.pack(
            MAGIC,
            FORMAT_VERSION,
            int(self.mode),
            self.rounded_modulus_bits,
            self.log_ring_dimension,
            self.parameter_count,
        )

    @classmethod
    def decode(cls, data: bytes | memoryview) -> PayloadHeader:
        """Parses the first 16 bytes of ``data``.

        Raises:
            WireError: on a short buffer, wrong magic, unknown version or mode, or bad sizes.
        """
        if len(data) < HEADER_BYTES:
            raise WireError(f"payload has {len(data)} bytes, shorter than the header")
        magic, version, mode, kp, log_n, count = _HEADER.unpack_from(data)
        if magic != MAGIC:
            raise WireError(f"bad magic {bytes(magic)!r}")
        if version != FORMAT_VERSION:
            raise WireError(f"unsupported payload format version {version}")
        try:
            sum_mode = SumMode(mode)
        except ValueError as error:
            raise WireError(f"unknown sum mode {mode}") from error
        if not 1 <= kp <= 64 or not 2 <= log_n <= 20 or count < 1:
            raise WireError(f"bad header sizes: kp={kp} log2 n={log_n} D={count}")
        return cls(sum_mode, kp, log_n, count)


class PayloadLayout:
    """Sizes and offsets of the payload for one parameter set and parameter count."""

    def __init__(self, params: OneshotParams, parameter_count: int) -> None:
        """Computes the layout.

        Raises:
            WireError: if ``parameter_count`` is not positive.
        """
        if parameter_count < 1:
            raise WireError(f"parameter count must be positive, got {parameter_count}")
        self.params = params
        self.parameter_count = parameter_count
        self.ring_dimension = n = params.ring_dimension
        self.bits = kp = params.rounded_modulus_bits
        self.low_bytes, self.high_bits = divmod(kp, 8)
        self.block_count = params.block_count(parameter_count)
        self.full_block_bytes = self.block_bytes(n)
        self.last_block_values = parameter_count - (self.block_count - 1) * n
        self.header = PayloadHeader(params.mode, kp, n.bit_length() - 1, parameter_count).encode()
        self.size = HEADER_BYTES + (self.block_count - 1) * self.full_block_bytes
        self.size += self.block_bytes(self.last_block_values)

    def block_bytes(self, values: int) -> int:
        """Bytes of a block holding ``values`` coefficients."""
        return values * self.low_bytes + -(-values * self.high_bits // 8)

    def block_values(self, block: int) -> int:
        """Coefficients carried by block ``block``."""
        return self.last_block_values if block == self.block_count - 1 else self.ring_dimension

    def block_offset(self, block: int) -> int:
        """Payload offset of the first byte of block ``block``."""
        return HEADER_BYTES + block * self.full_block_bytes

    def run_values(self, first_block: int, count: int) -> int:
        """Coefficients carried by ``count`` blocks from ``first_block``."""
        if count == 0:
            return 0
        return (count - 1) * self.ring_dimension + self.block_values(first_block + count - 1)

    def check_header(self, data: bytes | memoryview) -> None:
        """Checks that ``data`` starts with this layout's header.

        Raises:
            WireError: naming the field that differs.
        """
        header = PayloadHeader.decode(data)
        expected = PayloadHeader.decode(self.header)
        if header != expected:
            raise WireError(f"payload header {header} does not match the round's {expected}")

    def _check_run(self, first_block: int, count: int) -> None:
        if count < 1 or first_block < 0 or first_block + count > self.block_count:
            raise WireError(f"blocks {first_block}+{count} outside 0..{self.block_count}")


def pack_blocks(layout: PayloadLayout, first_block: int, values: npt.NDArray[np.uint64]) -> bytes:
    """Encodes consecutive blocks from ``first_block`` (the run's values, all below 2^kp)."""
    n = layout.ring_dimension
    count = -(-values.size // n)
    layout._check_run(first_block, count)
    if values.size != layout.run_values(first_block, count):
        raise WireError(f"{values.size} values do not fill blocks {first_block}+{count}")
    full = count if values.size == count * n else count - 1
    parts = []
    if full:
        parts.append(_pack_rows(layout, values[: full * n].reshape(full, n)).tobytes())
    if full < count:
        tail = values[full * n :]
        padded = np.zeros(-(-tail.size // _GROUP) * _GROUP, dtype=np.uint64)
        padded[: tail.size] = tail
        row = _pack_rows(layout, padded[None, :])[0]
        low_end = tail.size * layout.low_bytes
        high_start = padded.size * layout.low_bytes
        high = row[high_start : high_start + -(-tail.size * layout.high_bits // 8)]
        parts.append(row[:low_end].tobytes() + high.tobytes())
    return b"".join(parts)


def _pack_rows(layout: PayloadLayout, rows: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint8]:
    blocks, width = rows.shape
    w, r = layout.low_bytes, layout.high_bits
    pieces = []
    if w:
        if w in (1, 2, 4, 8):
            low = rows.astype(f"<u{w}").view(np.uint8).reshape(blocks, width * w)
        else:
            wide = "<u4" if w < 4 else "<u8"
            bytes_per = 4 if w < 4 else 8
            as_bytes = rows.astype(wide).view(np.uint8).reshape(blocks, width, bytes_per)
            low = as_bytes[:, :, :w].reshape(blocks, width * w)
        pieces.append(low)
    if r:
        # SWAR: 8 consecutive r-bit fields sit one per byte of a u64; slide byte i down to
        # bit r*i.
        high = (rows >> np.uint64(8 * w)).astype(np.uint8).reshape(blocks, width // _GROUP, 8)
        spread = high.view("<u8").reshape(blocks, width // _GROUP)
        packed = spread & np.uint64((1 << r) - 1)
        for i in range(1, _GROUP):
            field = np.uint64(((1 << r) - 1) << (r * i))
            packed |= (spread >> np.uint64((8 - r) * i)) & field
        as_bytes = packed.astype("<u8").view(np.uint8).reshape(blocks, width // _GROUP, 8)
        pieces.append(as_bytes[:, :, :r].reshape(blocks, width // _GROUP * r))
    return np.concatenate(pieces, axis=1) if len(pieces) > 1 else pieces[0]


def unpack_blocks(
    layout: PayloadLayout, first_block: int, data: bytes | memoryview
) -> npt.NDArray[np.uint64]:
    """Decodes the bytes of whole blocks from ``first_block`` (body bytes, no header).

    Raises:
        WireError: if ``data`` is not exactly a whole number of blocks or has non-zero spare bits.
    """
    low, high = unpack_parts(layout, first_block, data)
    values = low.astype(np.uint64)
    if high is not None:
        values |= high.astype(np.uint64) << np.uint64(8 * layout.low_bytes)
    return values


def unpack_parts(
    layout: PayloadLayout, first_block: int, data: bytes | memoryview
) -> tuple[npt.NDArray[np.unsignedinteger], npt.NDArray[np.uint8] | None]:
    """Decodes whole blocks into their low parts and their top r bits, without combining.

    Summing the two parts separately and combining once (low + high 2^(8w)) saves the
    coordinator a pass over every upload.

    Returns:
        (low, high): low as unsigned integers below 2^(8w), high as uint8 below 2^r (None
        when r = 0), one entry per coefficient.

    Raises:
        WireError: if ``data`` is not exactly a whole number of blocks or has non-zero spare bits.
    """
    full_bytes = layout.full_block_bytes
    remaining = layout.block_count - first_block
    if first_block < 0 or remaining < 1:
        raise WireError(f"block {first_block} outside 0..{layout.block_count}")
    last_bytes = layout.block_bytes(layout.last_block_values)
    size = len(data)
    if size == (remaining - 1) * full_bytes + last_bytes:
        full, with_last = remaining - 1, True
    elif size % full_bytes == 0 and 0 < size // full_bytes < remaining:
        full, with_last = size // full_bytes, False
    else:
        raise WireError(f"{size} bytes are not whole blocks from block {first_block}")
    buffer = np.frombuffer(data, dtype=np.uint8)
    n = layout.ring_dimension
    lows: list[npt.NDArray[np.unsignedinteger]] = []
    highs: list[npt.NDArray[np.uint8] | None] = []
    if full:
        rows = buffer[: full * full_bytes].reshape(full, full_bytes)
        low, high = _split_rows(layout, rows, n)
        lows.append(low.reshape(full * n))
        highs.append(None if high is None else high.reshape(full * n))
    if with_last:
        tail = buffer[full * full_bytes :]
        count = layout.last_block_values
        padded_count = -(-count // _GROUP) * _GROUP
        row = np.zeros(layout.block_bytes(padded_count), dtype=np.uint8)
        low_end = count * layout.low_bytes
        row[:low_end] = tail[:low_end]
        high_start = padded_count * layout.low_bytes
        row[high_start : high_start + tail.size - low_end] = tail[low_end:]
        low, high = _split_rows(layout, row[None, :], padded_count)
        if (high is not None and np.any(high[0, count:])) or np.any(low[0, count:]):
            raise WireError("non-zero spare bits in the last block")
        lows.append(low[0, :count])
        highs.append(None if high is None else high[0, :count])
    low_all = np.concatenate(lows) if len(lows) > 1 else lows[0]
    if layout.high_bits == 0:
        return low_all, None
    high_parts = [h for h in highs if h is not None]
    return low_all, np.concatenate(high_parts) if len(high_parts) > 1 else high_parts[0]


def _split_rows(
    layout: PayloadLayout, rows: npt.NDArray[np.uint8], width: int
) -> tuple[npt.NDArray[np.unsignedinteger], npt.NDArray[np.uint8] | None]:
    blocks = rows.shape[0]
    w, r = layout.low_bytes, layout.high_bits
    low_size = width * w
    low: npt.NDArray[np.unsignedinteger]
    if w in (1, 2, 4, 8):
        low = rows[:, :low_size].view(f"<u{w}")
    elif w == 3 and r and rows.flags.c_contiguous:
        # Overlapping 4-byte reads at stride 3; the byte past a block's low part is its first
        # high byte, so no read leaves the buffer. The mask drops that byte.
        overlapping: npt.NDArray[np.uint32] = np.ndarray(
            (blocks, width), dtype="<u4", buffer=rows, strides=(rows.strides[0], 3)
        )
        low = overlapping & np.uint32(0xFFFFFF)
    elif w:
        size = 4 if w < 4 else 8
        wide = np.zeros((blocks, width, size), dtype=np.uint8)
        wide[:, :, :w] = rows[:, :low_size].reshape(blocks, width, w)
        low = wide.view(f"<u{size}").reshape(blocks, width)
    else:
        low = np.zeros((blocks, width), dtype=np.uint8)
    if not r:
        return low, None
    groups = width // _GROUP
    wide = np.zeros((blocks, groups, 8), dtype=np.uint8)
    wide[:, :, :r] = rows[:, low_size:].reshape(blocks, groups, r)
    packed = wide.view("<u8").reshape(blocks, groups)
    # SWAR: move field i (bits r*i ..) to byte i, so the u64 reads as 8 one-byte fields.
    spread = packed & np.uint64((1 << r) - 1)
    for i in range(1, _GROUP):
        field = np.uint64(((1 << r) - 1) << (8 * i))
        spread |= (packed << np.uint64((8 - r) * i)) & field
    high = spread.astype("<u8").view(np.uint8).reshape(blocks, width)
    return low, high
