"""A lab's request for an experiment it cannot run itself, as a market bounty's `task_spec` (docs/market.md, "A lab
buys an experiment"): the one interface between the lab that asks (lab/buying.py) and the rig that answers
(lab/fulfil.py).

    {"protocol": "loopylab/experiment-v1",
     "experiment": "weigh blue_block",                       # one notebook experiment line
     "object": {"label": "blue_block", "shape": "cube", "size": 0.05},   # what the contributor matches
     "repetitions": 3,                                         # runs of it in one submission
     "topics": ["arm/joint_command", "arm/joint_state", "wrist/wrench"],   # in the MCAP (twin replay)
     "notebook": true}                                         # a .nb with experiment, observation, raw lines

Acceptance checks are the market's own kinds (market/verify/declared.py): the observed quantity in a
plausible range, enough joint states to replay, timestamps that never go back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from loopylab.world import notebook as g

PROTOCOL = "loopylab/experiment-v1"
# joint commands and states: what the market's twin replay needs; the wrist: what weighing reads
TOPICS = ("arm/joint_command", "arm/joint_state", "wrist/wrench")
MAX_REPETITIONS = 20
# a plausible range per observed quantity (the grammar's observation words): outside it nothing is physical
PLAUSIBLE = {"mass": (0.005, 5.0), "slide": (0.0, 1.0), "force": (0.0, 100.0), "bounce": (0.0, 0.5)}
SPEC_KEYS = ("protocol", "experiment", "object", "repetitions", "topics", "notebook")


class RequestError(ValueError):
    """A task_spec that is not a lab's experiment request (the message names the key and why)."""


@dataclass(frozen=True)
class ObjectDescription:
    """What the contributor needs to find the object on their bench: its label, shape and size (m)."""

    label: str
    shape: str
    size: float

    def to_dict(self) -> dict:
        return {"label": self.label, "shape": self.shape, "size": self.size}

    @classmethod
    def of(cls, scene: g.Scene, label: str) -> ObjectDescription:
        o = scene.get(label)
        return cls(o.name, o.shape, o.size)


@dataclass(frozen=True)
class ExperimentRequest:
    experiment: g.Experiment
    object: ObjectDescription
    repetitions: int = 3
    topics: tuple[str, ...] = TOPICS

    def task_spec(self) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL,
            "experiment": self.experiment.render(),
            "object": self.object.to_dict(),
            "repetitions": self.repetitions,
            "topics": list(self.topics),
            "notebook": True,
        }

    def acceptance(self) -> list[dict[str, Any]]:
        """The market checks every submission must pass: each observed quantity plausible, a joint state
        per repetition at least, timestamps in order on every topic."""
        checks: list[dict[str, Any]] = []
        for word, _key, _d in g.OBS_FIELDS[self.experiment.skill]:
            if word in PLAUSIBLE:
                lo, hi = PLAUSIBLE[word]
                checks.append({"check": "notebook_range", "quantity": word, "min": lo, "max": hi})
        checks.append({"check": "min_messages", "topic": "arm/joint_state", "count": 10 * self.repetitions})
        checks.append({"check": "monotonic", "topic": "*"})
        return checks

    @classmethod
    def from_task_spec(cls, spec: Any) -> ExperimentRequest:
        """The request a bounty's task_spec holds; RequestError (one line) for anything else."""
        if not isinstance(spec, dict):
            raise RequestError("task_spec: not a table")
        if spec.get("protocol") != PROTOCOL:
            raise RequestError(f"task_spec.protocol: {spec.get('protocol')!r} is not {PROTOCOL!r}")
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise RequestError(f"task_spec: unknown keys {unknown}")
        try:
            exp = g.parse_body("experiment", str(spec.get("experiment", "")))
        except g.GrammarError as e:
            raise RequestError(f"task_spec.experiment: {e}") from None
        assert isinstance(exp, g.Experiment)
        obj = spec.get("object")
        if not isinstance(obj, dict) or set(obj) != {"label", "shape", "size"}:
            raise RequestError("task_spec.object: want {label, shape, size}")
        size = obj["size"]
        if not isinstance(size, (int, float)) or isinstance(size, bool) or not (math.isfinite(size) and 0 < size < 1):
            raise RequestError(f"task_spec.object.size: {size!r} is not a size in metres")
        if obj["label"] != exp.object or obj["shape"] not in g.SHAPES:
            raise RequestError("task_spec.object: label is not the experiment's object, or an unknown shape")
        reps = spec.get("repetitions")
        if not isinstance(reps, int) or isinstance(reps, bool) or not 1 <= reps <= MAX_REPETITIONS:
            raise RequestError(f"task_spec.repetitions: {reps!r} is not a whole number in 1..{MAX_REPETITIONS}")
        topics = spec.get("topics")
        if not isinstance(topics, list) or not all(isinstance(t, str) and t for t in topics):
            raise RequestError("task_spec.topics: want a list of topic names")
        if spec.get("notebook") is not True:
            raise RequestError("task_spec.notebook: a lab request needs the notebook (true)")
        return cls(exp, ObjectDescription(str(obj["label"]), str(obj["shape"]), float(size)), reps, tuple(topics))


def match_object(want: ObjectDescription, scene: g.Scene, size_tol: float = 0.01) -> str:
    """The contributor's object for a request: the one of the same label, shape and size (within `size_tol` m),
    else the only one of that shape and size. ValueError (one line) when there is none, or several."""
    same = [o for o in scene.objects if o.shape == want.shape and abs(o.size - want.size) <= size_tol]
    named = [o for o in same if o.name == want.label]
    if named:
        return named[0].name
    if len(same) == 1:
        return same[0].name
    what = f"{want.shape} of {want.size:.2f} m"
    if not same:
        raise ValueError(f"no {what} on this bench (it has {scene.render()})")
    raise ValueError(f"{len(same)} objects match a {what} ({', '.join(o.name for o in same)}); none is {want.label}")
