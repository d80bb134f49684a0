import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopylab.world.splits import SPLITS, SplitError, check_split, seeds, split_of


def test_splits_are_disjoint_and_named():
    names = list(SPLITS)
    assert names == ["train", "dev", "test"]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            ra, rb = SPLITS[a], SPLITS[b]
            assert ra.stop <= rb.start or rb.stop <= ra.start, (a, b)


@given(st.sampled_from(list(SPLITS)), st.integers(0, 500), st.integers(0, 500))
def test_seeds_belong_to_their_split(split, n, offset):
    got = seeds(split, n, offset)
    assert len(got) == n == len(set(got))
    assert all(split_of(s) == split for s in got)
    check_split(got, split)


def test_a_benchmark_cannot_report_on_tuned_worlds():
    with pytest.raises(SplitError, match="not in the test split"):
        check_split(seeds("dev", 3) + seeds("test", 2), "test")
    with pytest.raises(SplitError, match="unknown split"):
        seeds("validation", 1)
    with pytest.raises(SplitError, match="has 100000 seeds"):
        seeds("dev", 10, offset=99_995)
    assert split_of(-1) is None
