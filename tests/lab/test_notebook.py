"""The notebook: records and text agree, files round-trip, entries go out on lab/notebook."""

import io
import uuid

import numpy as np
from rich.console import Console

from loopylab.bus import Node, NotebookEntry
from loopylab.lab.notebook import Notebook, bus_sink, console_sink, jsonl_sink, load_jsonl
from loopylab.world import notebook as g

BODIES = [
    g.Question("friction", ("red_block",), 0.05),
    g.Scene((g.SceneObject("red_block", "cube", 0.05, 0.55, 0.0),)),
    g.Hypothesis((g.Range("friction", "red_block", 0.2, 0.9),)),
    g.Experiment("strike", "red_block", "+x", speed=0.4),
    g.Observation.from_measurements("strike", {"slide_m": 0.04127, "launch_speed_mps": 0.41}),
    g.Belief((g.Estimate("friction", "red_block", 0.41, 0.09),)),
    g.Conclusion((g.Estimate("friction", "red_block", 0.4, 0.03),)),
]


def test_records_text_and_files_round_trip(tmp_path):
    buf = io.StringIO()
    nb = Notebook(BODIES[0], sinks=[jsonl_sink(tmp_path / "live.jsonl"), console_sink(Console(file=buf, width=200))])
    for b in BODIES:
        nb.add(b, data={"n": np.float64(1.5)} if isinstance(b, g.Experiment) else None)
    jl, txt = nb.save(tmp_path)
    text = txt.read_text()
    assert [s.body for s in g.parse(text)] == BODIES
    assert g.render(g.parse(text)) == text
    for path in (jl, tmp_path / "live.jsonl"):
        entries = load_jsonl(path)
        assert [e.kind for e in entries] == list(g.KINDS)
        assert "".join(e.text + "\n" for e in entries) == text
        assert entries[3].data == {"n": 1.5} and entries[0].investigation == nb.investigation
    assert "slide 0.041" in buf.getvalue() and "conclusion" in buf.getvalue()
    assert nb.experiments_used == 1 and nb.last("belief") == BODIES[5]


def test_entries_are_published_on_lab_notebook():
    url = f"inproc://{uuid.uuid4().hex}"
    with Node("lab", url) as lab, Node("listener", url) as listener:
        sub = listener.subscribe("lab/notebook", NotebookEntry)
        pub = lab.publisher("lab/notebook", NotebookEntry)
        assert pub.wait_for_subscribers(1, timeout=5)
        nb = Notebook(BODIES[0], sinks=[bus_sink(pub)])
        for b in BODIES[:3]:
            nb.add(b)
        got = [sub.get(timeout=5) for _ in range(3)]
    assert [e.text for e in got] == [e.text for e in nb.entries]
    assert [e.step for e in got] == [0, 1, 2]


def test_bad_jsonl_line_is_named(tmp_path):
    p = tmp_path / "nb.jsonl"
    p.write_text('{"kind": "question"}\nnot json\n')
    try:
        load_jsonl(p)
    except ValueError as e:
        assert "nb.jsonl:2" in str(e)
    else:
        raise AssertionError("a broken line must be reported")
