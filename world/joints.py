"""Joint-name bookkeeping: values that come in one joint order, wanted in another.

A JointState or JointCommand names its joints; the receiver has its own order (the URDF's, the motors').
Every receiver reorders through `reorder`, so a missing joint is always the same clear error.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class JointMismatch(ValueError):
    """Named joints that do not match the ones wanted: the message names the missing (or extra) joints."""


def indices(have: Sequence[str], want: Sequence[str], exact: bool = False) -> list[int]:
    """The index in `have` of each joint of `want`. `exact`: `have` must name no other joint."""
    have, want = list(have), list(want)
    if len(set(have)) != len(have):
        raise JointMismatch(f"joint names repeat: {have}")
    where = {n: i for i, n in enumerate(have)}
    missing = [n for n in want if n not in where]
    if missing:
        raise JointMismatch(
            f"joint {missing[0]!r} missing: got {have}, want {want}"
            if len(missing) == 1
            else f"joints {missing} missing: got {have}, want {want}"
        )
    wanted = set(want)
    extra = [n for n in have if n not in wanted] if exact else []
    if extra:
        raise JointMismatch(f"unexpected joints {extra}: got {have}, want {want}")
    return [where[n] for n in want]


def reorder(values: Sequence[float], have: Sequence[str], want: Sequence[str], exact: bool = False) -> np.ndarray:
    """`values`, given in the joint order `have`, in the order `want` (float64). An empty `have` means the
    values already come in the order `want` (the bus messages' convention). `exact`: `have` must name no
    joint outside `want`. Raises JointMismatch naming a missing joint or a count that does not match. Values
    already in order come back as they are (not copied when they are a float64 array)."""
    v = np.asarray(values, float)
    have = list(have) or list(want)
    if v.shape != (len(have),):
        raise JointMismatch(f"{v.size} values for {len(have)} joints {have}")
    if have == list(want):  # the usual case: the sender already uses the receiver's order
        return v
    return v[indices(have, want, exact)]
