"""World-seed splits, declared once for the whole project.

- `train`: worlds the policy's training notebooks and any fitted figure come from.
- `dev`: worlds for tuning (noise models, thresholds, design knobs) and for choosing checkpoints.
- `test`: held-out worlds; every benchmark reports on these, and nothing is tuned on them.

A figure from worlds you tuned on is not a result: benchmarks take their seeds from `seeds("test", n)`
and `check_split` refuses seeds from another split with one clear line.
"""

from __future__ import annotations

SPLITS: dict[str, range] = {
    "train": range(1_000_000),
    "dev": range(1_000_000, 1_100_000),
    "test": range(2_000_000, 2_100_000),
}


class SplitError(ValueError):
    """A seed outside the split it was asked for, or an unknown split name."""


def split_range(split: str) -> range:
    try:
        return SPLITS[split]
    except KeyError:
        raise SplitError(f"unknown split {split!r}; known: {', '.join(SPLITS)}") from None


def split_of(seed: int) -> str | None:
    """The split a world seed belongs to, or None for a seed outside every split (an ad-hoc world)."""
    for name, r in SPLITS.items():
        if seed in r:
            return name
    return None


def seeds(split: str, n: int, offset: int = 0) -> list[int]:
    """The first `n` seeds of `split` after skipping `offset`: the same worlds on every machine."""
    r = split_range(split)
    if n < 0 or offset < 0 or offset + n > len(r):
        raise SplitError(f"split {split!r} has {len(r)} seeds; asked for {n} after {offset}")
    return list(r[offset : offset + n])


def check_split(seed_list: list[int], split: str) -> None:
    """Refuse seeds that are not all in `split` (e.g. a benchmark asked to report on tuned worlds)."""
    r = split_range(split)
    stray = [s for s in seed_list if s not in r]
    if stray:
        shown = ", ".join(str(s) for s in stray[:5]) + (" ..." if len(stray) > 5 else "")
        raise SplitError(
            f"{len(stray)} seed(s) are not in the {split} split [{r.start}, {r.stop}): {shown}; "
            f"see loopylab.world.splits"
        )
