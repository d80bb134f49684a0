"""The contributor's side of a lab's bounty: read the request (lab/bounty_request.py), find the object on this
bench, run the experiment as many times as asked while recording the bus, and leave a folder the market takes:

    recording.mcap   the requested topics (joint commands and states for the market's twin replay, the wrist)
    notebook.nb      per repetition: the experiment, its observation and its raw measurements (world/notebook.py)

    folder = fulfil(request, out, bench)        # then MarketClient.submit_folder(claim, folder)

`loopylab lab fulfil BOUNTY --market URL --key K --rig-key R` (lab/market_cli.py) claims, runs this on the
simulated bench (a world seed of the contributor's choosing) or a graph, and submits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

from loopylab.lab.bounty_request import ExperimentRequest, match_object
from loopylab.lab.investigation import grammar_scene, observe
from loopylab.world import audit as a
from loopylab.world import notebook as g

RECORDING, NOTEBOOK = "recording.mcap", "notebook.nb"


@dataclass
class Fulfilled:
    folder: Path
    object: str  # the object on this bench that matched the request
    observations: list[g.Observation]
    messages: int  # recorded


def fulfil(request: ExperimentRequest, out: Path, bench, scene=None) -> Fulfilled:
    """Run `request` on `bench` (a lab.bench.Bench whose world is loaded; `scene`: its perceived SceneSpec)
    and write the folder. The notebook names the object as the request does (the requester's label)."""
    from loopylab.bus.record import Recorder

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    here = match_object(request.object, grammar_scene(scene)) if scene is not None else request.object.label
    exp = replace(request.experiment, object=here)
    rec = Recorder(bench.node, out / RECORDING, topics=list(request.topics))
    sections: list = []
    observations = []
    try:
        _wait_connected(bench, rec)
        for _ in range(request.repetitions):
            reply = bench.runner.execute(exp)
            obs, _m = observe(exp, reply)
            observations.append(obs)
            sections += [request.experiment, obs]
            raw = a.Raw.from_measurements(reply.get("measurements") or {}) if reply.get("ok") else None
            if raw is not None:
                sections.append(raw)
    finally:
        stats = rec.close()
    (out / NOTEBOOK).write_text(g.render(sections))
    return Fulfilled(out, here, observations, int(stats.get("messages", rec.written)))


def _wait_connected(bench, rec, timeout: float = 10.0) -> None:
    """Until the recorder hears the arm (its subscriptions connect a moment after they are made)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and rec.written == 0:
        rec.discover()
        time.sleep(0.05)
