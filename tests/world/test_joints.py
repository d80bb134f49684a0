"""Joint-name reordering (`loopylab.world.joints`): the one helper every receiver of joint values uses."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopylab.world.joints import JointMismatch, indices, reorder

names = st.lists(st.text("abcdefgh_", min_size=1, max_size=6), min_size=1, max_size=8, unique=True)


@given(names, st.randoms(use_true_random=False), st.data())
def test_reorder_puts_each_value_under_its_name_whatever_the_order(want, rnd, data):
    have = list(want)
    rnd.shuffle(have)
    values = data.draw(st.lists(st.floats(-10, 10), min_size=len(have), max_size=len(have)))
    out = reorder(values, have, want, exact=True)
    assert out.dtype == np.float64 and out.shape == (len(want),)
    assert all(out[want.index(n)] == v for n, v in zip(have, values))
    assert np.array_equal(reorder(out, want, have), np.asarray(values, float))  # and back


@given(names.filter(lambda n: len(n) > 1), st.data())  # (no names at all: the values come in the wanted order)
def test_a_missing_joint_is_named_and_extras_are_refused_only_when_exact(want, data):
    missing = data.draw(st.sampled_from(want))
    have = [n for n in want if n != missing]
    with pytest.raises(JointMismatch, match=f"joint {missing!r} missing"):
        reorder(np.zeros(len(have)), have, want)
    extra = [*want, "zz_extra"]
    assert np.array_equal(reorder(np.arange(len(extra)), extra, want), np.arange(len(want)))
    with pytest.raises(JointMismatch, match="unexpected joints \\['zz_extra'\\]"):
        reorder(np.arange(len(extra)), extra, want, exact=True)


def test_unnamed_values_come_in_the_wanted_order_and_counts_must_match():
    assert np.array_equal(reorder([1, 2], [], ["a", "b"]), [1.0, 2.0])
    with pytest.raises(JointMismatch, match="3 values for 2 joints"):
        reorder([1, 2, 3], ["a", "b"], ["a", "b"])
    with pytest.raises(JointMismatch, match="repeat"):
        indices(["a", "a"], ["a"])
    assert indices(["c", "a", "b"], ["a", "b"]) == [1, 2]
