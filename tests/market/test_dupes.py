"""Near-duplicate detection against the disguises a cheater uses (hypothesis-generated copies: sensor-level
noise, constant offsets, re-timing, a digit edited inside an uncompressed MCAP, one notebook value edited),
and against false alarms: independent honest runs of the same experiment are not flagged."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loopylab.market.sample import copy_recording, write_push, write_recording
from loopylab.market.verify import dupes
from loopylab.market.verify.pipeline import fingerprint_files

SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def fp(folder: Path) -> dict:
    return fingerprint_files({p.name: p for p in Path(folder).iterdir()})


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """A random-walk recording and a run of a fixed push (smooth profile + sensor noise), fingerprinted."""
    d = tmp_path_factory.mktemp("orig")
    walk, push = write_recording(d / "walk", seed=3), write_push(d / "push", run=1)
    return {"walk": (walk, fp(walk)), "push": (push, fp(push))}


def assert_caught(copy: Path, original_fp: dict) -> str:
    """The copy is a near-duplicate, and the band index finds its original (it shares an LSH key)."""
    copy_fp = fp(copy)
    score, why = dupes.compare(copy_fp, original_fp)
    assert score >= 1.0, f"copy not caught: {why!r}"
    assert set(dupes.bands(copy_fp)) & set(dupes.bands(original_fp)), "the index would not find the original"
    return why


@SETTINGS
@given(kind=st.sampled_from(["walk", "push"]), noise=st.floats(1e-4, 1e-3), seed=st.integers(0, 2**16))
def test_a_copy_with_sensor_level_noise_is_caught(originals, tmp_path, kind, noise, seed):
    src, ofp = originals[kind]
    assert_caught(copy_recording(src, tmp_path / f"c{seed}", noise=noise, seed=seed), ofp)


@SETTINGS
@given(kind=st.sampled_from(["walk", "push"]), offset=st.floats(-0.01, 0.01).filter(lambda x: abs(x) > 1e-6))
def test_a_copy_with_a_constant_offset_is_caught(originals, tmp_path, kind, offset):
    src, ofp = originals[kind]
    assert_caught(copy_recording(src, tmp_path / f"c{offset}", offset=offset), ofp)


@SETTINGS
@given(
    kind=st.sampled_from(["walk", "push"]),
    shift_s=st.integers(-(10**6), 10**6),
    scale=st.floats(0.25, 4.0),
)
def test_a_retimed_copy_is_caught(originals, tmp_path, kind, shift_s, scale):
    """Stamps shifted by up to 11 days and stretched or squeezed 4x: fingerprints go by message order."""
    src, ofp = originals[kind]
    assert_caught(copy_recording(src, tmp_path / f"c{shift_s}", shift_ns=shift_s * 10**9, scale=scale), ofp)


@SETTINGS
@given(kind=st.sampled_from(["walk", "push"]), at=st.floats(0.05, 0.95), digit=st.sampled_from("0123456789"))
def test_a_digit_edited_inside_an_uncompressed_mcap_is_caught(originals, tmp_path, kind, at, digit):
    src, ofp = originals[kind]
    copy = copy_recording(src, tmp_path / f"c{at}{digit}", compress=False)
    data = bytearray((copy / "recording.mcap").read_bytes())
    digits = [m.start() for m in re.finditer(rb'"force": \[-?\d\.(\d)', bytes(data))]
    pos = digits[int(at * len(digits))] + len(b'"force": [')
    pos = pos + 1 if data[pos : pos + 1] == b"-" else pos  # the first digit of a force value
    data[pos] = ord(digit)
    (copy / "recording.mcap").write_bytes(bytes(data))
    assert_caught(copy, ofp)


def test_one_edited_notebook_value_is_caught(tmp_path):
    """A notebook-only copy with one measured value changed: 5 of its 6 measured numbers are the original's."""
    orig = write_recording(tmp_path / "o", seed=5) / "notebook.nb"
    text = orig.read_text()
    edited = re.sub(r"force (\d+\.\d\d)", lambda m: f"force {float(m.group(1)) + 0.01:.2f}", text)
    assert edited != text
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notebook.nb").write_text(edited)
    (tmp_path / "oo").mkdir()
    (tmp_path / "oo" / "notebook.nb").write_text(text)
    assert_caught(tmp_path / "c", fp(tmp_path / "oo"))


def test_independent_honest_runs_of_the_same_experiment_are_not_flagged(tmp_path):
    """Eight runs of one push (the same smooth profile within 2 %, each with its own sensor noise), and eight
    random walks, and eight 0.3 s ones: no pair is a near-duplicate, so honest contributors are not turned away."""
    for gen in (
        lambda i: write_push(tmp_path / f"p{i}", run=100 + i),
        lambda i: write_recording(tmp_path / f"w{i}", seed=100 + i),
        lambda i: write_recording(tmp_path / f"s{i}", seed=200 + i, seconds=0.3),  # 16-31 messages a topic
    ):
        fps = [fp(gen(i)) for i in range(8)]
        flagged = [(i, j, dupes.compare(a, b)[1]) for (i, a), (j, b) in itertools.combinations(enumerate(fps), 2)]
        assert [f for f in flagged if f[2]] == []


def test_a_copy_of_a_noise_free_recording_is_caught_by_its_shape(tmp_path):
    """A simulated run has no sensor noise to compare: a noisy copy of it is caught by its shape, while a run
    of a different experiment (the block 30 cm further, so contact later) is not. (Two noise-free runs of
    the same experiment are duplicates by design: nothing in the second is independent of the first.)"""
    a = write_push(tmp_path / "a", run=7, sensor_noise=0.0, encoder_noise=0.0)
    ofp = fp(a)
    assert_caught(copy_recording(a, tmp_path / "c", noise=1e-3, offset=1e-3, seed=1), ofp)
    other = write_push(tmp_path / "b", run=8, sensor_noise=0.0, encoder_noise=0.0, contact_s=0.8)
    assert dupes.compare(fp(other), ofp)[0] == 0.0
