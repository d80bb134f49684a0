"""SceneSpec: everything that defines a simulated bench — robot, table, objects with their hidden
physical properties, cameras — and `scene_from_seed`, the deterministic seed -> scene map.

Poses are in the robot base frame (the world frame of the simulation; the table top is z = 0).
Hidden properties (mass, friction, restitution, com_offset, friction_axes, sticky) are what the lab must discover;
`SceneSpec.perceived()` strips them, leaving what a camera could tell. `with_structure` draws a world's hidden
*structure* (which explanatory model is true, e.g. friction isotropic or direction-dependent) for the question
kinds that ask about it, from a stream of its own: the seeded worlds of the other kinds stay byte-identical.

A world's layout (objects, sizes, colours, poses: what a camera sees) comes from its seed; its hidden
properties and structure come, when the world builder holds a `secret`, from a stream keyed by
HMAC-SHA256(secret, seed) instead. The layout identifies the seed (an agent can search for it), so without the
secret the seed's world is only the *public* world (tests, demos, the gym env): the graded world is the
secret's, and the perceived scene carries nothing from which it can be rebuilt. The layout is the same
either way (the public draws are made, then replaced), so a seed names the same bench in both.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import tomli_w

from loopylab.world.config import check_keys, field_names, from_mapping

_T = TypeVar("_T")

SHAPES = ("cube", "cylinder", "sphere")
SHAPE_WORD = {"cube": "block", "cylinder": "cylinder", "sphere": "ball"}
COLOURS = {
    "red": (0.85, 0.1, 0.1, 1.0),
    "blue": (0.1, 0.2, 0.85, 1.0),
    "green": (0.1, 0.7, 0.2, 1.0),
    "yellow": (0.9, 0.8, 0.1, 1.0),
}
HIDDEN = ("mass", "friction", "restitution", "com_offset", "friction_axes", "sticky", "attached_to")

# Where objects may be placed for each robot: x range, |y| max (metres, base frame). Well inside reach
# with a top-down tool and room to push 10 cm in any direction.
PLACEMENT = {
    "panda": ((0.42, 0.62), 0.18),
    "kuka_iiwa": ((0.45, 0.62), 0.18),
    "xarm6": ((0.28, 0.47), 0.2),
    "so101": ((0.14, 0.22), 1.0),
    "koch": ((0.14, 0.2), 1.0),
}  # so101, koch: radius range and |bearing| max (rad): their reach is a ring
SMALL_ARMS = ("so101", "koch")  # desk arms: smaller, lighter objects, placed on a ring


def hidden_ranges(robot: str | None = None) -> dict[str, tuple[float, float]]:
    """The range each hidden property of a seeded world's objects is drawn from for `robot` (None: a Panda's):
    what the lab may assume before any experiment (its prior, lab/beliefs.prior_ranges). Mass is log-uniform;
    the desk arms' objects are lighter (up to 0.3 kg) as well as smaller."""
    return {
        "friction": (0.2, 0.9),
        "mass": (0.05, 0.3 if robot in SMALL_ARMS else 0.6),
        "restitution": (0.1, 0.8),
    }


@dataclass
class ObjectSpec:
    label: str  # e.g. red_block, blue_cylinder, green_ball
    shape: str  # cube | cylinder | sphere
    size: float  # edge length / diameter (cylinder height = diameter), m
    rgba: tuple = (0.5, 0.5, 0.5, 1.0)
    position: tuple = (0.5, 0.0, 0.025)  # geometric centre, m
    orientation: tuple = (0.0, 0.0, 0.0, 1.0)  # xyzw
    # hidden properties: None in a perceived scene
    mass: float | None = None  # kg
    friction: float | None = None  # lateral friction coefficient (table has 1.0)
    restitution: float | None = None  # coefficient (table has 1.0)
    com_offset: tuple | None = None  # centre of mass relative to the geometric centre, m
    # direction-dependent friction: the factors (x, y) of `friction` along the object's own axes (None:
    # isotropic); the sim applies them as Bullet's anisotropic friction
    friction_axes: tuple | None = None
    # sticky contact: restitution falls with the impact speed v as (v / 1 m/s)^-sticky, `restitution` its value at
    # 1 m/s (sim/sticky.py; None: elastic, the same restitution at every speed)
    sticky: float | None = None
    # a hidden weld: "table", or another object's label, that this object is rigidly fixed to (None: free); the
    # sim realises it as a fixed constraint (loopylab.sim.weld)
    attached_to: str | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise ValueError(f"object {self.label!r}: shape must be one of {SHAPES}, not {self.shape!r}")
        if not 0.01 <= self.size <= 0.2:
            raise ValueError(f"object {self.label!r}: size {self.size} m outside 0.01..0.2")
        self.rgba, self.position, self.orientation = (
            tuple(map(float, v)) for v in (self.rgba, self.position, self.orientation)
        )
        if self.com_offset is not None:
            self.com_offset = tuple(map(float, self.com_offset))
        if self.friction_axes is not None:
            self.friction_axes = tuple(map(float, self.friction_axes))
            if len(self.friction_axes) != 2 or not all(0.05 <= f <= 1.0 for f in self.friction_axes):
                raise ValueError(
                    f"object {self.label!r}: friction_axes must be two factors in 0.05..1, not {self.friction_axes}"
                )
        if self.sticky is not None and not 0.0 <= float(self.sticky) <= 2.0:
            raise ValueError(f"object {self.label!r}: sticky (an exponent) must be in 0..2, not {self.sticky}")

        if self.attached_to is not None and (not self.attached_to or self.attached_to == self.label):
            raise ValueError(f"object {self.label!r}: attached_to must be 'table' or another object's label")

    @property
    def height(self) -> float:
        return self.size

    @property
    def hidden_known(self) -> bool:
        return None not in (self.mass, self.friction, self.restitution)


@dataclass
class CameraSpec:
    name: str
    mount: str = "world"  # world: pose in base frame | wrist: pose in the EE frame
    position: tuple = (0.5, 0.0, 1.0)
    target: tuple = (0.5, 0.0, 0.0)  # point looked at (same frame as position)
    up: tuple = (1.0, 0.0, 0.0)
    fov_deg: float = 60.0  # vertical field of view
    width: int = 320
    height: int = 240
    near: float = 0.02
    far: float = 3.0
    hz: float = 10.0

    def __post_init__(self) -> None:
        self.position, self.target, self.up = (tuple(map(float, v)) for v in (self.position, self.target, self.up))


@dataclass
class TableSpec:
    friction: float = 1.0  # Bullet multiplies coefficients: the object's own value is what shows
    restitution: float = 1.0
    rgba: tuple = (0.75, 0.65, 0.5, 1.0)

    def __post_init__(self) -> None:
        self.rgba = tuple(map(float, self.rgba))


@dataclass
class SceneSpec:
    robot: str = "panda"
    seed: int | None = None
    objects: list[ObjectSpec] = field(default_factory=list)
    cameras: list[CameraSpec] = field(default_factory=list)
    table: TableSpec = field(default_factory=TableSpec)
    dt: float = 1.0 / 240.0
    gravity: float = -9.81

    def object(self, label: str) -> ObjectSpec:
        for o in self.objects:
            if o.label == label:
                return o
        raise KeyError(f"no object {label!r} in the scene (have {', '.join(self.labels) or 'none'})")

    @property
    def labels(self) -> list[str]:
        return [o.label for o in self.objects]

    def perceived(self) -> SceneSpec:
        """What the lab may know: labels, shapes, sizes, colours, poses; hidden properties removed, and the
        seed too (`scene_from_seed` would rebuild every hidden property from it)."""
        s = copy.deepcopy(self)
        s.seed = None
        for o in s.objects:
            for k in HIDDEN:
                setattr(o, k, None)
        return s

    def with_params(self, params: dict[str, dict]) -> SceneSpec:
        """A copy with hidden properties set from {label: {mass, friction, restitution, com_offset}}."""
        s = copy.deepcopy(self)
        for label, props in params.items():
            o = s.object(label)
            for k, v in props.items():
                if k not in HIDDEN:
                    raise KeyError(f"unknown property {k!r} for {label!r} (known: {', '.join(HIDDEN)})")
                if k == "attached_to":
                    setattr(o, k, None if v is None else str(v))
                    continue
                setattr(o, k, tuple(v) if k in ("com_offset", "friction_axes") else float(v))
        return s

    # -- serialisation -----------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        if d["seed"] is None:
            del d["seed"]
        for o in d["objects"]:
            for k in HIDDEN:
                if o[k] is None:
                    del o[k]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SceneSpec:
        check_keys(d, field_names(cls), "scene")

        def each(kind: type[_T], key: str) -> list[_T]:
            return [from_mapping(kind, v, f"scene: {key}[{i}]") for i, v in enumerate(d.get(key, []))]

        return cls(
            robot=d.get("robot", "panda"),
            seed=d.get("seed"),
            objects=each(ObjectSpec, "objects"),
            cameras=each(CameraSpec, "cameras"),
            table=from_mapping(TableSpec, d.get("table", {}), "scene: table"),
            dt=float(d.get("dt", 1 / 240)),
            gravity=float(d.get("gravity", -9.81)),
        )

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text_or_path: str | Path) -> SceneSpec:
        p = Path(text_or_path)
        text = p.read_text() if "\n" not in str(text_or_path) and p.exists() else str(text_or_path)
        return cls.from_dict(tomllib.loads(text))


def default_cameras(robot: str) -> list[CameraSpec]:
    (x0, x1), _ = PLACEMENT.get(robot, PLACEMENT["panda"])
    cx = (x0 + x1) / 2
    h = 0.7 if robot not in SMALL_ARMS else 0.45
    # oblique, from beyond the workspace (straight overhead, the arm's hand hides the middle of the table)
    return [
        CameraSpec(
            "overhead", "world", (cx + 0.5 * h, 0.0, h), (cx, 0.0, 0.0), (-1.0, 0.0, 0.0), 60.0, 320, 240, hz=10.0
        ),
        CameraSpec(
            "wrist", "wrist", (0.05, 0.0, 0.0), (0.05, 0.0, 0.3), (1.0, 0.0, 0.0), 70.0, 160, 120, near=0.01, hz=10.0
        ),
    ]


def keyed_rng(secret: bytes | str, seed: int, stream: str) -> np.random.Generator:
    """A random stream that only a holder of `secret` can reproduce: HMAC-SHA256(secret, seed/stream) seeds it."""
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if not key:
        raise ValueError("a world secret must not be empty (None: the public world)")
    digest = hmac.new(key, f"{int(seed)}/{stream}".encode(), hashlib.sha256).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32))


def _hidden(rng: np.random.Generator, size: float, ranges: dict) -> tuple[float, float, float, tuple]:
    """One object's hidden properties (mass, friction, restitution, com_offset): the draws the worlds make, from
    `hidden_ranges` (mass log-uniform)."""
    mass = round(float(np.exp(rng.uniform(*np.log(ranges["mass"])))), 3)
    friction = round(float(rng.uniform(*ranges["friction"])), 3)
    restitution = round(float(rng.uniform(*ranges["restitution"])), 3)
    com = tuple(round(float(v), 4) for v in rng.uniform(-0.15, 0.15, 3) * size * np.array([1, 1, 0.5]))
    return mass, friction, restitution, com


def scene_from_seed(
    seed: int, n_objects: int | None = None, robot: str = "panda", secret: bytes | str | None = None
) -> SceneSpec:
    """The world of `seed`: 1–4 objects with hidden properties, placed reachable and apart. Deterministic.
    `secret`: the hidden properties from the world builder's keyed stream (`keyed_rng`), not from the seed's;
    the layout is the same."""
    if robot not in PLACEMENT:
        raise ValueError(f"unknown robot {robot!r} (known: {', '.join(PLACEMENT)})")
    rng = np.random.default_rng([int(seed), 0x100B])
    n = int(rng.integers(1, 5)) if n_objects is None else int(n_objects)
    if not 1 <= n <= 4:
        raise ValueError(f"n_objects must be 1..4, got {n}")
    (x0, x1), ymax = PLACEMENT[robot]
    small = robot in SMALL_ARMS
    hidden = None if secret is None else keyed_rng(secret, seed, "hidden")
    ranges = hidden_ranges(robot)
    objects: list[ObjectSpec] = []
    spacing = 0.03 if small else 0.07  # a gripper's width between objects
    for i, colour in enumerate(list(COLOURS)[:n]):
        # the first object is a block: every world has a `red_block`, the usual subject of a question
        shape = "cube" if i == 0 else SHAPES[int(rng.integers(0, 3))]
        size = round(float(rng.uniform(0.03, 0.045 if small else 0.07)), 3)
        mass, friction, restitution, com = _hidden(rng, size, ranges)  # drawn either way: the layout stays
        if hidden is not None:
            mass, friction, restitution, com = _hidden(hidden, size, ranges)
        for _ in range(500):  # rejection sampling: keep a gripper's width between objects
            if small:
                r, a = float(rng.uniform(x0, x1)), float(rng.uniform(-ymax, ymax))
                xy = (r * np.cos(a), r * np.sin(a))
            else:
                xy = (float(rng.uniform(x0, x1)), float(rng.uniform(-ymax, ymax)))
            if all(
                np.hypot(xy[0] - o.position[0], xy[1] - o.position[1]) > (size + o.size) / 2 + spacing for o in objects
            ):
                break
        else:
            if n_objects is not None:
                raise RuntimeError(f"seed {seed}: could not place {n} objects apart for {robot}")
            break  # a crowded draw: this world has fewer objects

        objects.append(
            ObjectSpec(
                f"{colour}_{SHAPE_WORD[shape]}",
                shape,
                size,
                COLOURS[colour],
                (round(xy[0], 4), round(xy[1], 4), size / 2),
                (0.0, 0.0, 0.0, 1.0),
                mass,
                friction,
                restitution,
                com,
            )
        )
    return SceneSpec(robot=robot, seed=int(seed), objects=objects, cameras=default_cameras(robot))


# -- structure: which explanatory model a world's subject follows ------------------------------------------
# direction-dependent friction: the slippery axis's friction is this share of the other's (a gap from 1, so
# that the two models make different predictions; Bullet scales friction down exactly, not up)
ANISO_RATIO = (0.4, 0.625)
FRICTION_RANGE = (0.2, 0.9)  # every axis's friction stays in the range the seeded worlds draw from


def _friction_model(s: SceneSpec, o: ObjectSpec, rng: np.random.Generator) -> SceneSpec:
    """Friction direction-dependent in half the worlds (one axis `ANISO_RATIO` as slippery as the other, both in
    `FRICTION_RANGE`), isotropic in the rest."""
    if rng.random() < 0.5:
        return s  # isotropic: the seeded world as it is
    ratio = float(np.exp(rng.uniform(*np.log(ANISO_RATIO))))
    lo, hi = FRICTION_RANGE
    o.friction = round(float(rng.uniform(lo / ratio, hi)), 3)  # the grippier axis; the other keeps >= lo
    slippery = int(rng.integers(0, 2))
    o.friction_axes = tuple(round(ratio, 3) if i == slippery else 1.0 for i in range(2))
    return s


# sticky contact (sim/sticky.py): the stickiness k of a sticky world and its restitution at 1 m/s, drawn so that
# every drop from 4 to 28 cm (impacts at 0.9-2.3 m/s) bounces measurably (e 0.17-0.8) and the law's fall over
# those drops (to 0.78-0.55 of its value at 4 cm) is far from an elastic object's none
STICKY_RANGE = (0.3, 0.7)
STICKY_E0 = (0.3, 0.75)


def _bounce_model(s: SceneSpec, o: ObjectSpec, rng: np.random.Generator) -> SceneSpec:
    """Contact sticky in half the worlds (restitution falling with impact speed: `STICKY_RANGE`, `STICKY_E0`),
    elastic in the rest (the seeded world's constant restitution)."""
    if rng.random() < 0.5:
        return s  # elastic: the seeded world as it is
    o.sticky = round(float(rng.uniform(*STICKY_RANGE)), 3)
    o.restitution = round(float(rng.uniform(*STICKY_E0)), 3)
    return s


# an off-centre centre of mass: the offset along one of the object's own horizontal axes is this share of its size
# at least (the other's anywhere the seeded worlds draw, up to COM_SHARE), so that a centred model is measurably
# wrong (the wrist torque reads a light block's offset to a few mm: lab/com.py)
COM_OFF_SHARE = (0.15, 0.25)
COM_SHARE = 0.15  # the seeded worlds' |offset| along x or y, as a share of the size


def _com_model(s: SceneSpec, o: ObjectSpec, rng: np.random.Generator) -> SceneSpec:
    """The centre of mass at the geometric centre (0, 0, 0) in half the worlds; in the rest offset horizontally,
    along one axis by `COM_OFF_SHARE` of the size (either sign), along the other within +-`COM_SHARE`."""
    if rng.random() < 0.5:
        o.com_offset = (0.0, 0.0, 0.0)
        return s
    far = float(rng.choice((-1.0, 1.0)) * rng.uniform(*COM_OFF_SHARE) * o.size)
    near = float(rng.uniform(-COM_SHARE, COM_SHARE) * o.size)
    xy = (far, near) if rng.random() < 0.5 else (near, far)
    z = o.com_offset[2] if o.com_offset is not None else 0.0
    o.com_offset = (round(xy[0], 4), round(xy[1], 4), z)
    return s


def _attachment(s: SceneSpec, o: ObjectSpec, rng: np.random.Generator) -> SceneSpec:
    """The subject free, welded to the table, or welded to the first other object (the one an "is A attached
    to B" question asks about), a third each; with no other object, free or welded to the table, a half each."""
    others = [x.label for x in s.objects if x.label != o.label]
    pick = int(rng.integers(0, 3 if others else 2))
    o.attached_to = (None, "table", others[0] if others else None)[pick]
    return s


def _sliders(s: SceneSpec, o: ObjectSpec, rng: np.random.Generator) -> SceneSpec:
    """Two objects at least that slide: a ball rolls, and no push or strike shows its friction (lab/rank.py), so a
    world whose draw left one block among balls (a "rank by friction" question then ranked three balls, a coin
    flip on every path: test world 2000001) has its first balls drawn as cylinders of the same size, in the same
    place, until two slide. The rest of the world, hidden properties included, is the seed's."""
    sliding = sum(x.shape != "sphere" for x in s.objects)
    for x in s.objects:
        if sliding >= 2:
            break
        if x.shape == "sphere":
            x.shape, x.label = "cylinder", x.label.removesuffix(SHAPE_WORD["sphere"]) + SHAPE_WORD["cylinder"]
            sliding += 1
    return s


# name -> (stream code, drawer): a drawer gets a copy of the seeded world, its subject and the structure's own
# random stream (seed, 0x57C0, code), and returns the world with the subject's structure drawn. A new structure
# adds one drawer and one entry with a code of its own (codes never change: they fix the worlds' streams).
STRUCTURES: dict[str, tuple[int, Callable[[SceneSpec, ObjectSpec, np.random.Generator], SceneSpec]]] = {
    "friction_model": (0, _friction_model),
    "bounce_model": (0xB0, _bounce_model),
    "com_model": (0xC0, _com_model),
    "attachment": (1, _attachment),
    "sliders": (0x51, _sliders),
}


def with_structure(
    spec: SceneSpec, structure: str, subject: str | None = None, secret: bytes | str | None = None
) -> SceneSpec:
    """A copy of the seeded world `spec` whose subject (red_block, else the first object) has the hidden
    `structure` (a key of STRUCTURES) drawn from its own stream (seed, structure), keyed by the world builder's
    `secret` when it holds one (the world's own, `scene_from_seed(..., secret)`)."""
    if structure not in STRUCTURES:
        raise ValueError(f"unknown structure {structure!r} (known: {', '.join(STRUCTURES)})")
    if spec.seed is None or not spec.objects:
        raise ValueError("a structure is drawn for a seeded world with objects")
    s = copy.deepcopy(spec)
    label = subject or ("red_block" if "red_block" in s.labels else s.labels[0])
    code, draw = STRUCTURES[structure]
    if secret is None:
        rng = np.random.default_rng([int(spec.seed), 0x57C0, code])
    else:
        rng = keyed_rng(secret, spec.seed, f"structure/{code}")
    return draw(s, s.object(label), rng)
