"""Auditing: does any chunk of a sector fall within the slot's solution range? (spec 04 s1-2)

Every slot the farmer derives, per sector, the ``sector_slot_challenge`` and from it one
s-bucket; it reads only that s-bucket's chunks (located through the sector metadata, no need
for the contents map) and hashes each chunk with keyed BLAKE3.  A chunk whose first 8 hash bytes
are within ``solution_range / 2`` of the global challenge (bidirectional, wrapping) is a
candidate for proving.

The hashing runs in numba (one BLAKE3 compression per 32-byte chunk) so that auditing a whole
plot fits in the slot: :func:`audit_sectors` audits many sectors' s-buckets in one call.

Main API: ``global_challenge_from_pot_output``, ``sector_slot_challenge``,
``s_bucket_audit_index``, ``audit_location`` / ``sector_audit_location`` (where to read),
``audit_sector`` / ``audit_sectors`` / ``audit_plot`` -> ``SectorAuditResult`` (candidates best
first, stable by chunk offset) or None, ``order_by_best_distance``.  Audit with the slot's
*voting* solution range.  ``audit_chunk_ranges`` audits s-buckets of many sectors in place in one
call (the farm's whole-plot audit).  ``blake3_hash_rows`` is a batch BLAKE3 used for proof hashes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from services.protocol.constants import RECORD_NUM_S_BUCKETS, SCALAR_FULL_BYTES
from services.protocol.hashes import blake3_hash, blake3_hash_list, blake3_hash_with_key
from services.protocol.sector import SectorMetadata, plot_sector_offset, sector_contents_map_size, sector_size
from services.protocol.validation import U64_MAX

POT_OUTPUT_SIZE = 16
CHALLENGE_SIZE = 32

_IV = np.array(
    [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19],
    dtype=np.uint32,
)  # also the plain-hash chaining value of the first block
_MSG_PERMUTATION = (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)


def _message_schedule() -> np.ndarray:
    rounds = [list(range(16))]
    for _ in range(6):
        rounds.append([rounds[-1][i] for i in _MSG_PERMUTATION])
    return np.array(rounds, dtype=np.int64)


_SCHEDULE = _message_schedule()
# CHUNK_START | CHUNK_END | ROOT | KEYED_HASH: a keyed hash of one <= 64-byte block
_KEYED_ONE_BLOCK_FLAGS = 1 | 2 | 8 | 16


class AuditError(ValueError):
    """Bad audit input (wrong sizes)."""


# --------------------------------------------------------------------------------------------
# Challenges (spec 04 section 1)


def derive_global_randomness(pot_output: bytes) -> bytes:
    if len(pot_output) != POT_OUTPUT_SIZE:
        raise ValueError(f"PoT output must be {POT_OUTPUT_SIZE} bytes, got {len(pot_output)}")
    return blake3_hash(pot_output)


def derive_global_challenge(global_randomness: bytes, slot: int) -> bytes:
    if len(global_randomness) != 32:
        raise ValueError(f"global randomness must be 32 bytes, got {len(global_randomness)}")
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot <= U64_MAX:
        raise ValueError(f"slot must be a u64, got {slot!r}")
    return blake3_hash_list([global_randomness, slot.to_bytes(8, "little")])


def global_challenge_from_pot_output(pot_output: bytes, slot: int) -> bytes:
    return derive_global_challenge(derive_global_randomness(pot_output), slot)


def xor32(a: bytes, b: bytes) -> bytes:
    """Byte-wise XOR of two 32-byte strings."""
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).to_bytes(32, "little")


def sector_slot_challenge(sector_id: bytes, global_challenge: bytes) -> bytes:
    if len(sector_id) != 32:
        raise ValueError(f"sector id must be 32 bytes, got {len(sector_id)}")
    if len(global_challenge) != CHALLENGE_SIZE:
        raise ValueError(f"global challenge must be {CHALLENGE_SIZE} bytes, got {len(global_challenge)}")
    return xor32(sector_id, global_challenge)


def s_bucket_audit_index(sector_slot_challenge_bytes: bytes) -> int:
    """``u16_le(sector_slot_challenge[0..2])``."""
    if len(sector_slot_challenge_bytes) != CHALLENGE_SIZE:
        raise ValueError(f"sector slot challenge must be 32 bytes, got {len(sector_slot_challenge_bytes)}")
    return int.from_bytes(sector_slot_challenge_bytes[:2], "little")


# --------------------------------------------------------------------------------------------
# Distance (spec 01 section 6, spec 04 section 2)


def bidirectional_distance(a: int, b: int) -> int:
    return min((a - b) & U64_MAX, (b - a) & U64_MAX)


def chunk_audit_value(sector_slot_challenge_bytes: bytes, chunk: bytes) -> int:
    """``u64_le(keyed_blake3(key=sector_slot_challenge, chunk)[0..8])`` (reference path)."""
    if len(chunk) != SCALAR_FULL_BYTES:
        raise ValueError(f"chunk must be {SCALAR_FULL_BYTES} bytes, got {len(chunk)}")
    return int.from_bytes(blake3_hash_with_key(sector_slot_challenge_bytes, chunk)[:8], "little")


def chunk_distance(sector_slot_challenge_bytes: bytes, global_challenge: bytes, chunk: bytes) -> int:
    return bidirectional_distance(
        chunk_audit_value(sector_slot_challenge_bytes, chunk), int.from_bytes(global_challenge[:8], "little")
    )


def is_within_solution_range(distance: int, solution_range: int) -> bool:
    return distance <= solution_range // 2


# --------------------------------------------------------------------------------------------
# numba kernel: keyed BLAKE3 of 32-byte chunks -> first 8 output bytes


_LANES = 16  # chunks hashed side by side so LLVM vectorises the rounds across them


@njit(cache=True, nogil=True, inline="always")
def _g_lanes(v, a, b, c, d, m, x, y):
    # uint32 arithmetic wraps mod 2^32 through the np.uint32 casts
    for lane in range(v.shape[1]):
        va = np.uint32(v[a, lane] + v[b, lane] + m[x, lane])
        vd = np.uint32(v[d, lane] ^ va)
        vd = np.uint32((vd >> np.uint32(16)) | (vd << np.uint32(16)))
        vc = np.uint32(v[c, lane] + vd)
        vb = np.uint32(v[b, lane] ^ vc)
        vb = np.uint32((vb >> np.uint32(12)) | (vb << np.uint32(20)))
        va = np.uint32(va + vb + m[y, lane])
        vd = np.uint32(vd ^ va)
        vd = np.uint32((vd >> np.uint32(8)) | (vd << np.uint32(24)))
        vc = np.uint32(vc + vd)
        vb = np.uint32(vb ^ vc)
        vb = np.uint32((vb >> np.uint32(7)) | (vb << np.uint32(25)))
        v[a, lane] = va
        v[b, lane] = vb
        v[c, lane] = vc
        v[d, lane] = vd


@njit(cache=True, nogil=True, inline="always")
def _rounds_lanes(v, m, schedule):
    for r in range(7):
        s = schedule[r]
        _g_lanes(v, 0, 4, 8, 12, m, s[0], s[1])
        _g_lanes(v, 1, 5, 9, 13, m, s[2], s[3])
        _g_lanes(v, 2, 6, 10, 14, m, s[4], s[5])
        _g_lanes(v, 3, 7, 11, 15, m, s[6], s[7])
        _g_lanes(v, 0, 5, 10, 15, m, s[8], s[9])
        _g_lanes(v, 1, 6, 11, 12, m, s[10], s[11])
        _g_lanes(v, 2, 7, 8, 13, m, s[12], s[13])
        _g_lanes(v, 3, 4, 9, 14, m, s[14], s[15])


@njit(cache=True, nogil=True)
def _audit_values_kernel(words, chunk_keys, key_words, iv, schedule, flags, out):
    """``out[i]`` = u64 LE of the first 8 bytes of keyed BLAKE3(key_words[chunk_keys[i]], chunk i).

    ``words`` holds each 32-byte chunk as 8 LE u32 words; the message block is zero padded to
    64 bytes, block length 32, counter 0.
    """
    n = words.shape[0]
    lanes = _LANES
    v = np.empty((16, lanes), dtype=np.uint32)
    m = np.zeros((16, lanes), dtype=np.uint32)
    for base in range(0, n, lanes):
        count = min(lanes, n - base)
        for lane in range(lanes):
            i = base + lane if lane < count else base
            k = chunk_keys[i]
            for w in range(8):
                m[w, lane] = words[i, w]
                v[w, lane] = key_words[k, w]
            v[8, lane] = iv[0]
            v[9, lane] = iv[1]
            v[10, lane] = iv[2]
            v[11, lane] = iv[3]
            v[12, lane] = 0
            v[13, lane] = 0
            v[14, lane] = 32
            v[15, lane] = flags
        _rounds_lanes(v, m, schedule)
        for lane in range(count):
            low = np.uint64(v[0, lane] ^ v[8, lane])
            high = np.uint64(v[1, lane] ^ v[9, lane])
            out[base + lane] = low | (high << np.uint64(32))


@njit(cache=True, nogil=True)
def _hash_messages_kernel(words, message_len, iv, schedule, out):
    """Plain BLAKE3 of equal-length messages of at most 1024 bytes (one chunk).

    ``words`` (n, 16 * blocks) uint32 LE message words, zero padded; ``out`` (n, 8) uint32.
    """
    n = words.shape[0]
    lanes = _LANES
    blocks = max(1, (message_len + 63) // 64)
    v = np.empty((16, lanes), dtype=np.uint32)
    cv = np.empty((8, lanes), dtype=np.uint32)
    m = np.zeros((16, lanes), dtype=np.uint32)
    for base in range(0, n, lanes):
        count = min(lanes, n - base)
        for lane in range(lanes):
            for w in range(8):
                cv[w, lane] = iv[w]
        for block in range(blocks):
            block_len = min(64, message_len - 64 * block)
            flags = 0
            if block == 0:
                flags |= 1  # CHUNK_START
            if block == blocks - 1:
                flags |= 2 | 8  # CHUNK_END | ROOT
            for lane in range(lanes):
                i = base + lane if lane < count else base
                for w in range(16):
                    m[w, lane] = words[i, 16 * block + w]
                for w in range(8):
                    v[w, lane] = cv[w, lane]
                v[8, lane] = iv[0]
                v[9, lane] = iv[1]
                v[10, lane] = iv[2]
                v[11, lane] = iv[3]
                v[12, lane] = 0
                v[13, lane] = 0
                v[14, lane] = block_len
                v[15, lane] = flags
            _rounds_lanes(v, m, schedule)
            for lane in range(lanes):
                for w in range(8):
                    cv[w, lane] = v[w, lane] ^ v[w + 8, lane]
        for lane in range(count):
            for w in range(8):
                out[base + lane, w] = cv[w, lane]


def blake3_hash_rows(rows: np.ndarray) -> np.ndarray:
    """BLAKE3 of every row of a ``(n, L)`` uint8 array (L <= 1024): ``(n, 32)`` uint8 digests."""
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    if rows.ndim != 2 or rows.shape[1] > 1024:
        raise ValueError(f"rows must be (n, L <= 1024) bytes, got shape {rows.shape}")
    n, length = rows.shape
    padded_len = max(64, (length + 63) // 64 * 64)
    padded = np.zeros((n, padded_len), dtype=np.uint8)
    padded[:, :length] = rows
    out = np.empty((n, 8), dtype=np.uint32)
    _hash_messages_kernel(padded.view("<u4"), length, _IV, _SCHEDULE, out)
    return out.view(np.uint8).reshape(n, 32)


def _key_words(keys: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(keys), dtype="<u4").reshape(len(keys), 8).astype(np.uint32)


def _as_chunk_array(data: bytes | bytearray | memoryview | np.ndarray, what: str) -> np.ndarray:
    arr = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
    arr = np.ascontiguousarray(arr, dtype=np.uint8).reshape(-1)
    if arr.size % SCALAR_FULL_BYTES:
        raise AuditError(f"{what} must be a multiple of {SCALAR_FULL_BYTES} bytes, got {arr.size}")
    return arr.reshape(-1, SCALAR_FULL_BYTES)


def _chunk_words(chunks: np.ndarray) -> np.ndarray:
    return chunks.view("<u4").reshape(-1, 8)


def audit_values(sector_slot_challenge_bytes: bytes, chunks: bytes | np.ndarray) -> np.ndarray:
    """Audit value (u64) of every 32-byte chunk, keyed by one sector slot challenge."""
    if len(sector_slot_challenge_bytes) != CHALLENGE_SIZE:
        raise AuditError(f"sector slot challenge must be 32 bytes, got {len(sector_slot_challenge_bytes)}")
    arr = _as_chunk_array(chunks, "s-bucket bytes")
    out = np.empty(arr.shape[0], dtype=np.uint64)
    _audit_values_kernel(
        _chunk_words(arr),
        np.zeros(arr.shape[0], dtype=np.int64),
        _key_words([sector_slot_challenge_bytes]),
        _IV,
        _SCHEDULE,
        _KEYED_ONE_BLOCK_FLAGS,
        out,
    )
    return out


@njit(cache=True, nogil=True)
def _audit_ranges_kernel(words, word_offsets, counts, key_words, iv, schedule, flags, g, half_range,
                         out_range, out_offset, out_distance):
    """Audit ``counts[j]`` chunks starting at word ``word_offsets[j]`` of ``words`` with key
    ``key_words[j]``; winners (distance <= half_range) go to the ``out_*`` arrays. Returns how
    many. uint64 arithmetic wraps, which is the bidirectional distance's modular difference."""
    lanes = _LANES
    v = np.empty((16, lanes), dtype=np.uint32)
    m = np.zeros((16, lanes), dtype=np.uint32)
    found = 0
    for j in range(word_offsets.shape[0]):
        first = word_offsets[j]
        n = counts[j]
        for base in range(0, n, lanes):
            count = min(lanes, n - base)
            for lane in range(lanes):
                c = base + lane if lane < count else base
                w0 = first + 8 * c
                for w in range(8):
                    m[w, lane] = words[w0 + w]
                    v[w, lane] = key_words[j, w]
                v[8, lane] = iv[0]
                v[9, lane] = iv[1]
                v[10, lane] = iv[2]
                v[11, lane] = iv[3]
                v[12, lane] = 0
                v[13, lane] = 0
                v[14, lane] = 32
                v[15, lane] = flags
            _rounds_lanes(v, m, schedule)
            for lane in range(count):
                low = np.uint64(v[0, lane] ^ v[8, lane])
                high = np.uint64(v[1, lane] ^ v[9, lane])
                value = low | (high << np.uint64(32))
                forward = value - g
                backward = g - value
                distance = forward if forward < backward else backward
                if distance <= half_range:
                    out_range[found] = j
                    out_offset[found] = base + lane
                    out_distance[found] = distance
                    found += 1
    return found


def audit_chunk_ranges(
    words: np.ndarray,
    word_offsets: np.ndarray,
    chunk_counts: np.ndarray,
    keys: np.ndarray,
    global_challenge: bytes,
    solution_range: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Audit many s-buckets in place, in one GIL-free kernel call (the farm's whole-plot audit).

    ``words`` is the plot as little-endian u32 words (e.g. an mmap of ``plot.bin``); s-bucket
    ``j`` is ``chunk_counts[j]`` chunks from word ``word_offsets[j]``, audited with the sector
    slot challenge ``keys[j]`` ((k, 32) uint8). Returns the winners as ``(j, chunk offset in the
    s-bucket, distance)`` arrays, in input order.
    """
    if len(global_challenge) != CHALLENGE_SIZE:
        raise AuditError(f"global challenge must be {CHALLENGE_SIZE} bytes, got {len(global_challenge)}")
    if isinstance(solution_range, bool) or not isinstance(solution_range, int) or not 0 <= solution_range <= U64_MAX:
        raise AuditError(f"solution range must be a u64, got {solution_range!r}")
    k = word_offsets.shape[0]
    if chunk_counts.shape != (k,) or keys.shape != (k, CHALLENGE_SIZE) or words.dtype != np.uint32:
        raise AuditError(f"word offsets {word_offsets.shape}, counts {chunk_counts.shape}, keys {keys.shape} and "
                         f"words {words.dtype} do not fit together")
    total = int(chunk_counts.sum())
    if k and int((word_offsets + 8 * chunk_counts).max()) > words.shape[0]:
        raise AuditError("an s-bucket lies beyond the end of the plot")
    out_range = np.empty(total, dtype=np.int64)
    out_offset = np.empty(total, dtype=np.int64)
    out_distance = np.empty(total, dtype=np.uint64)
    key_words = np.ascontiguousarray(keys, dtype=np.uint8).view("<u4").astype(np.uint32)
    found = _audit_ranges_kernel(
        words, word_offsets.astype(np.int64, copy=False), chunk_counts.astype(np.int64, copy=False), key_words,
        _IV, _SCHEDULE, _KEYED_ONE_BLOCK_FLAGS, np.uint64(int.from_bytes(global_challenge[:8], "little")),
        np.uint64(solution_range // 2), out_range, out_offset, out_distance,
    )  # fmt: skip
    return out_range[:found], out_offset[:found], out_distance[:found]


def _distances(values: np.ndarray, global_challenge: bytes) -> np.ndarray:
    g = np.uint64(int.from_bytes(global_challenge[:8], "little"))
    with np.errstate(over="ignore"):
        return np.minimum(values - g, g - values)


# --------------------------------------------------------------------------------------------
# Auditing sectors


@dataclass(frozen=True)
class AuditCandidate:
    chunk_offset: int  # index of the chunk inside the audited s-bucket
    distance: int


@dataclass(frozen=True)
class SectorAuditResult:
    """Candidates of one sector, best (smallest distance) first."""

    sector_index: int
    sector_id: bytes
    s_bucket: int
    candidates: tuple[AuditCandidate, ...]

    @property
    def best_distance(self) -> int:
        return self.candidates[0].distance


def audit_location(
    sector_id: bytes, global_challenge: bytes, s_bucket_sizes: np.ndarray, pieces_in_sector: int
) -> tuple[int, int, int]:
    """``(s_bucket, byte_offset, byte_size)`` in the sector of the s-bucket to audit."""
    s_bucket = s_bucket_audit_index(sector_slot_challenge(sector_id, global_challenge))
    sizes = np.asarray(s_bucket_sizes)
    if sizes.shape != (RECORD_NUM_S_BUCKETS,):
        raise AuditError(f"s_bucket_sizes must have {RECORD_NUM_S_BUCKETS} entries, got {sizes.shape}")
    chunks_before = int(sizes[:s_bucket].sum(dtype=np.int64))
    offset = sector_contents_map_size(pieces_in_sector) + SCALAR_FULL_BYTES * chunks_before
    return s_bucket, offset, SCALAR_FULL_BYTES * int(sizes[s_bucket])


def sector_audit_location(sector_id: bytes, global_challenge: bytes, metadata: SectorMetadata) -> tuple[int, int, int]:
    """Like :func:`audit_location` using the metadata's cached s-bucket offsets (fast path)."""
    s_bucket = s_bucket_audit_index(sector_slot_challenge(sector_id, global_challenge))
    offset, size = metadata.s_bucket_byte_range(s_bucket)
    return s_bucket, offset, size


def _candidates(distances: np.ndarray, half_range: int) -> tuple[AuditCandidate, ...]:
    winners = np.flatnonzero(distances <= np.uint64(half_range))
    if winners.size == 0:
        return ()
    order = winners[np.argsort(distances[winners], kind="stable")]
    return tuple(AuditCandidate(int(i), int(distances[i])) for i in order)


def audit_sector(
    sector_index: int,
    sector_id: bytes,
    global_challenge: bytes,
    solution_range: int,
    s_bucket_bytes: bytes | bytearray | memoryview | np.ndarray,
) -> SectorAuditResult | None:
    """Audit one sector given the bytes of its audited s-bucket; None when nothing qualifies."""
    return audit_sectors([(sector_index, sector_id, s_bucket_bytes)], global_challenge, solution_range)[0]


def audit_sectors(
    sectors: list[tuple[int, bytes, bytes | bytearray | memoryview | np.ndarray]],
    global_challenge: bytes,
    solution_range: int,
) -> list[SectorAuditResult | None]:
    """Audit many sectors in one kernel call.

    ``sectors`` holds ``(sector_index, sector_id, s_bucket_bytes)`` where the bytes are those of
    the s-bucket :func:`audit_location` names for that sector.  Returns one result (or None)
    per input, in input order.
    """
    if len(global_challenge) != CHALLENGE_SIZE:
        raise AuditError(f"global challenge must be {CHALLENGE_SIZE} bytes, got {len(global_challenge)}")
    if isinstance(solution_range, bool) or not isinstance(solution_range, int) or not 0 <= solution_range <= U64_MAX:
        raise AuditError(f"solution range must be a u64, got {solution_range!r}")
    if not sectors:
        return []
    keys = []
    arrays = []
    for sector_index, sector_id, data in sectors:
        keys.append(sector_slot_challenge(sector_id, global_challenge))
        arrays.append(_as_chunk_array(data, f"s-bucket bytes of sector {sector_index}"))
    counts = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    chunks = np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
    chunk_keys = np.repeat(np.arange(len(arrays), dtype=np.int64), counts)
    values = np.empty(chunks.shape[0], dtype=np.uint64)
    _audit_values_kernel(
        _chunk_words(chunks), chunk_keys, _key_words(keys), _IV, _SCHEDULE, _KEYED_ONE_BLOCK_FLAGS, values
    )
    distances = _distances(values, global_challenge)
    half_range = solution_range // 2
    results: list[SectorAuditResult | None] = []
    start = 0
    for (sector_index, sector_id, _), key, count in zip(sectors, keys, counts):
        found = _candidates(distances[start : start + count], half_range)
        start += int(count)
        if found:
            results.append(SectorAuditResult(sector_index, bytes(sector_id), s_bucket_audit_index(key), found))
        else:
            results.append(None)
    return results


def audit_plot(
    plot: bytes | bytearray | memoryview | np.ndarray,
    sectors: list[tuple[bytes, SectorMetadata]],
    global_challenge: bytes,
    solution_range: int,
) -> list[SectorAuditResult | None]:
    """Audit sectors of one plot (``plot.bin`` bytes, e.g. a memoryview of an mmap).

    ``sectors`` holds ``(sector_id, metadata)``; sector ``i`` lives at
    ``i * sector_size(pieces_in_sector)``.  Only each sector's audited s-bucket is touched.
    """
    view = plot if isinstance(plot, np.ndarray) else memoryview(plot)
    batch = []
    for sector_id, metadata in sectors:
        _, offset, size = sector_audit_location(sector_id, global_challenge, metadata)
        start = plot_sector_offset(metadata.sector_index, metadata.pieces_in_sector) + offset
        if start + size > len(view) or offset + size > sector_size(metadata.pieces_in_sector):
            raise AuditError(
                f"plot of {len(view)} bytes is too short for sector {metadata.sector_index}'s audited s-bucket"
            )
        batch.append((metadata.sector_index, sector_id, view[start : start + size]))
    return audit_sectors(batch, global_challenge, solution_range)


def order_by_best_distance(results: list[SectorAuditResult | None]) -> list[SectorAuditResult]:
    """Sectors with candidates, best first (ties keep input order)."""
    found = [r for r in results if r is not None]
    return sorted(found, key=lambda r: r.best_distance)
