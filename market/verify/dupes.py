"""Near-duplicate detection that survives the cheap disguises: sensor-level noise, constant offsets, re-timing
(stamps shifted or scaled), and small edits (one value, one digit, one notebook number).

A submission's fingerprint holds, for each numeric channel of each topic (`wrist/wrench:force.2`):
  shape   the series standardised (offset and scale gone), smoothed and resampled by message index (not by
          stamp: re-timing changes nothing) to SHAPE_POINTS points
  fine    a sketch of its fine structure: the second difference (offsets and trends gone) projected onto
          SKETCH pseudo-random ±1 vectors indexed by message number, normalised. A copy keeps the original's
          fine structure (noise of 1 mN on top of a real sensor's 10-50 mN changes it by a few per cent);
          an independent recording of the same experiment has its own sensor noise: a sketch uncorrelated
          with the first (cosine ~ N(0, 1/SKETCH)), however alike the two runs' shapes are
  rough   the fine structure's size relative to the series' spread
plus the measured numbers of its notebooks (observations, beliefs, conclusions; the protocol's numbers
are the same in every honest run and left out) and a MinHash of content-defined chunks of every file's
bytes (a byte-level backstop for files the market does not decode).

A channel is copied when its fine sketches agree (a cosine FINE_Z sd above independent sketches'), or, for two
series too smooth to
carry independent noise (a simulated run), when the standardised shapes agree within SHAPE_COPY. A
submission is a near-duplicate of an earlier one when FINE_ENOUGH of their common channels share their
noise, or at least COPIED_SHARE of them are copied either way, when its notebook's measured numbers are the earlier one's but for one in five, or when their
bytes share at least CHUNK_COPY of their chunks.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections.abc import Iterable

import numpy as np

SHAPE_POINTS = 32
SHAPE_SCALE = 1000  # shape values are stored as integers (z-score x 1000)
SKETCH = 64
SKETCH_MAX = 20_000  # samples of a channel that enter its sketch (the cost stays bounded)
MIN_SAMPLES = 16  # shorter channels are not fingerprinted
MAX_CHANNELS = 48
FINE_Z = 4.8  # cosine of two sketches in sd of independent ones' (1/sqrt(dims), dims = min(SKETCH, samples - 2)):
# 0.6 for long series; a series of under 25 samples has too few dimensions to tell (a copy's cosine is ~0.99)
SMOOTH = 0.005  # rough below this (both series): no independent noise to tell two runs apart
SHAPE_COPY = 0.02  # rms difference of standardised shapes (in sd of the series)
COPIED_SHARE = 0.5
FINE_ENOUGH = 2  # channels whose noise is the same: chance odds ~1e-6 each, so two are proof
NOTEBOOK_COPY = 0.8
NOTEBOOK_MIN = 5
CHUNK_COPY = 0.9
CHUNK_MIN = 32  # chunks a submission needs before its bytes are compared
CHUNK_BYTES_MAX = 8 << 20  # bytes of a file that are chunked
MINHASH = 64
MEASURED = ("observation", "belief", "conclusion")

_rng = np.random.default_rng(20240611)
_A = _rng.integers(1, 2**63, MINHASH, dtype=np.uint64) | np.uint64(1)
_B = _rng.integers(0, 2**63, MINHASH, dtype=np.uint64)
_SA = _rng.integers(1, 2**63, SKETCH, dtype=np.uint64) | np.uint64(1)
_SB = _rng.integers(0, 2**63, SKETCH, dtype=np.uint64)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _signs(n: int) -> np.ndarray:
    """SKETCH x n matrix of ±1, the same for every submission (a hash of the row and the message index)."""
    i = np.arange(n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _SA[:, None] * (i[None, :] * _MIX + np.uint64(1)) + _SB[:, None]
    return np.where((h >> np.uint64(63)) == 1, 1.0, -1.0)


def channel(series: Iterable[float]) -> dict | None:
    """The fingerprint of one numeric channel, or None (too short, constant, not finite)."""
    x = np.asarray(list(series), dtype=float)
    n = len(x)
    if n < MIN_SAMPLES or not np.all(np.isfinite(x)):
        return None
    sd = float(x.std())
    if not sd > 1e-12 * max(1.0, float(np.abs(x).max())):
        return None
    z = (x - x.mean()) / sd
    w = max(1, n // SHAPE_POINTS)
    smooth = np.convolve(z, np.ones(w) / w, mode="valid") if w > 1 else z
    grid = np.linspace(0, len(smooth) - 1, SHAPE_POINTS)
    shape = np.interp(grid, np.arange(len(smooth)), smooth)
    d2 = np.diff(x[:SKETCH_MAX], 2)
    r = float(np.sqrt(np.mean(d2**2)))
    sketch = _signs(len(d2)) @ d2 / (r * math.sqrt(len(d2))) if r > 0 else np.zeros(SKETCH)
    return {
        "n": n,
        "shape": [round(float(v) * SHAPE_SCALE) for v in np.clip(shape, -30, 30)],
        "fine": [round(float(v), 4) for v in sketch],
        "rough": r / sd,
    }


def fingerprint(series: dict[str, list[float]], notebook_numbers: list[float], chunks: set[int]) -> dict:
    """A submission's fingerprint from its channels (`topic:path` -> values in message order), its notebooks'
    measured numbers and its files' content-defined chunk hashes."""
    chans = {}
    for key in sorted(series):
        fp = channel(series[key])
        if fp is not None:
            chans[key] = fp
        if len(chans) >= MAX_CHANNELS:
            break
    return {
        "v": 2,
        "channels": chans,
        "notebook": [float(x) for x in notebook_numbers[:200]],
        "chunks": minhash(chunks),
        "n_chunks": len(chunks),
    }


def channel_copied(a: dict, b: dict) -> str:
    """ "fine" (the fine structure is the same: strong evidence), "shape" (two noise-free series of the same
    shape: weaker), or "" (not a copy)."""
    if a["n"] == b["n"] and min(a["rough"], b["rough"]) >= SMOOTH:  # fine structure that is noise, not a kink
        fa, fb = np.asarray(a["fine"]), np.asarray(b["fine"])
        denom = float(np.linalg.norm(fa) * np.linalg.norm(fb))
        if denom > 0 and float(fa @ fb) / denom * math.sqrt(min(SKETCH, a["n"] - 2)) >= FINE_Z:
            return "fine"
    if max(a["rough"], b["rough"]) >= SMOOTH or abs(a["n"] - b["n"]) > 0.1 * max(a["n"], b["n"]):
        return ""  # one carries noise of its own (or the counts differ): shapes alone prove nothing
    diff = (np.asarray(a["shape"]) - np.asarray(b["shape"])) / SHAPE_SCALE
    return "shape" if float(np.sqrt(np.mean(diff**2))) <= SHAPE_COPY else ""


def compare(a: dict, b: dict) -> tuple[float, str]:
    """(score in [0, 1], what matched) of two fingerprints; score >= 1 - 1e-9 is a near-duplicate."""
    if not (isinstance(a, dict) and isinstance(b, dict) and a.get("v") == 2 and b.get("v") == 2):
        return 0.0, ""
    common = sorted(set(a["channels"]) & set(b["channels"]))
    if common:
        how = [channel_copied(a["channels"][k], b["channels"][k]) for k in common]
        fine, copied = how.count("fine"), sum(1 for h in how if h)
        if fine >= min(FINE_ENOUGH, len(common)) or copied >= COPIED_SHARE * len(common):
            return 1.0, f"{copied} of {len(common)} recorded channels copied ({fine} to the sensor noise)"
    na, nb = a["notebook"], b["notebook"]
    if len(na) == len(nb) >= NOTEBOOK_MIN:
        same = sum(x == y for x, y in zip(na, nb)) / len(na)
        if same >= NOTEBOOK_COPY:
            return 1.0, f"notebook's measured values {same:.0%} the same"
    if min(a["n_chunks"], b["n_chunks"]) >= CHUNK_MIN:
        j = similarity(a["chunks"], b["chunks"])
        if j >= CHUNK_COPY:
            return 1.0, f"{j:.0%} of the files' content chunks the same"
    return 0.0, ""


def bands(fp: dict) -> list[int]:
    """Locality-sensitive keys of a fingerprint (63-bit ints, stored in an index): a near-copy shares at least
    one with its original (with near certainty), an unrelated recording almost never does, so only the few
    earlier submissions sharing a key are loaded and compared.
      fine sketch   per channel, 4 bands of 16 sign bits (a copy's sketch: cosine ~0.99, ~half its bands equal;
                    an independent one: 1 in 65,536 a band)
      shape         per smooth channel, 2 bands of the signs of its 31 steps
      notebook      the measured numbers with each one left out in turn (an edited value leaves one equal)
      chunks        16 bands of 4 MinHash values"""
    if not isinstance(fp, dict) or fp.get("v") != 2:
        return []
    keys: set[int] = set()
    for name, ch in fp["channels"].items():
        tag = f"{name}|{ch['n']}"
        bits = [x >= 0 for x in ch["fine"]]
        if ch["rough"] >= SMOOTH and any(ch["fine"]):
            for b in range(0, len(bits), 16):
                keys.add(_band(f"f|{tag}|{b}", bits[b : b + 16]))
        else:
            steps = [y >= x for x, y in itertools.pairwise(ch["shape"])]
            for b in (0, 16):
                keys.add(_band(f"s|{name}|{b}", steps[b : b + 16]))
    nb = fp["notebook"][:16]
    if len(nb) >= NOTEBOOK_MIN:
        for i in range(len(nb)):
            keys.add(_band(f"n|{len(nb)}|{i}", nb[:i] + nb[i + 1 :]))
    mh = fp["chunks"]
    if fp["n_chunks"] >= CHUNK_MIN:
        for b in range(0, len(mh), 4):
            keys.add(_band(f"c|{b}", mh[b : b + 4]))
    return sorted(keys)


def _band(tag: str, values: list) -> int:
    return _h64(repr((tag, values)).encode()) >> 1  # 63 bits: fits a signed BIGINT


def near_duplicates(fp: dict, prior: Iterable[tuple[int, dict]]) -> list[tuple[int, str]]:
    out = []
    for sid, other in prior:
        score, why = compare(fp, other)
        if score >= 1.0:
            out.append((sid, why))
    return out


# ------------------------------------------------------------------ bytes and notebooks


def _h64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def content_chunks(data: bytes, mask_bits: int = 8) -> set[int]:
    """Hashes of content-defined chunks (boundaries where a hash of the last 8 bytes has its top
    `mask_bits` bits zero: ~256-byte chunks that realign after an insertion or an edit)."""
    data = data[:CHUNK_BYTES_MAX]
    if len(data) < 16:
        return {_h64(data)} if data else set()
    b = np.frombuffer(data, dtype=np.uint8).astype(np.uint64)
    win = np.zeros(len(b) - 7, dtype=np.uint64)
    for k in range(8):
        win |= b[k : len(b) - 7 + k] << np.uint64(8 * k)
    with np.errstate(over="ignore"):
        h = win * _MIX
    cuts = np.flatnonzero((h >> np.uint64(64 - mask_bits)) == 0) + 8
    bounds = [0, *cuts.tolist(), len(data)]
    return {_h64(data[s:e]) for s, e in itertools.pairwise(bounds) if e > s}


def minhash(items: set[int]) -> list[int]:
    if not items:
        return []
    x = np.fromiter(items, dtype=np.uint64, count=len(items))
    with np.errstate(over="ignore"):
        h = _A[:, None] * x[None, :] + _B[:, None]
    return [int(v) for v in h.min(axis=1)]


def similarity(a: list, b: list) -> float:
    if not a or not b or len(a) != len(b):
        return 0.0
    return float(np.mean(np.array(a, dtype=np.uint64) == np.array(b, dtype=np.uint64)))


def notebook_numbers(sections: list) -> list[float]:
    """The measured numbers of a parsed notebook (observations, beliefs, conclusions) in order."""
    out: list[float] = []
    for s in sections:
        if s.kind not in MEASURED:
            continue
        body = s.body
        for _k, v in getattr(body, "values", ()) or ():
            out.append(float(v))
        for e in getattr(body, "estimates", ()) or getattr(body, "answers", ()) or ():
            for attr in ("value", "spread"):
                x = getattr(e, attr, None)
                if isinstance(x, (int, float)):
                    out.append(float(x))
    return out
