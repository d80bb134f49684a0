"""The twin fitted to a rig: noise and bias figures measured on known objects, saved in a TOML file the lab loads.

The belief engine's noise model (`loopylab.lab.beliefs.NoiseModel`) was calibrated sim against sim. On a rig the
sensors are the rig's: `loopylab lab calibrate-twin` (`loopylab.lab.twin_calibrate`) runs a short, fixed set of
experiments on objects whose properties the maker knows (weighed on a kitchen scale: a small TOML, `[[object]]`
tables with `label`, and `mass`, `friction`, `restitution` where known) and this module fits, with 95 %
confidence intervals:

- `force_noise_N`: the wrist sensor's force noise (1 sigma per axis, from a still window of its stream);
- `weigh_sd_kg`, `weigh_bias_kg`: the weigh skill's scatter and bias against the known masses;
- `tracking_lag_s`: how long the joints trail the gate's commands during a move;
- `push_noise_factor`: how much more than the noise model says the rig's pushes of objects of known mass and
  friction scatter about the twin's prediction at their truth.

The lab reads the file through two hooks. `calibrated(noise_model)`: the weigh's fitted floor replaces the
sim-fitted one, the push force's floor and rel grow by the push noise factor (where it is over 1), and the F/T noise, as it reaches a push's mean force (`push_force_noise`), is added in
quadrature to the force floor. `lag_s()`: the twin's pusher trails the skill's path by the fitted tracking
lag, as the rig's hand trails the gate's commands (`loopylab.lab.twin`). Which file: `use(path)` (the CLI's
`--twin-calibration`, or `default_path(graph)` next to a hardware graph), carried in $LOOPYLAB_TWIN_CALIBRATION so
that worker processes see it too.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from loopylab.world.config import ConfigError, from_mapping, load_table, read_document

ENV = "LOOPYLAB_TWIN_CALIBRATION"
LEVEL = 0.95  # confidence of the intervals


# -- the known objects -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KnownObject:
    """An object on the bench whose properties the maker measured (None: not known)."""

    label: str
    mass: float | None = None  # kg
    friction: float | None = None
    restitution: float | None = None

    def __post_init__(self):
        if not self.label:
            raise ValueError("an object needs a label")
        for name in ("mass", "friction", "restitution"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{self.label}: {name} must be a positive number, not {v!r}")


def load_objects(path: str | Path) -> list[KnownObject]:
    """The `[[object]]` tables of a known-objects TOML (strict: unknown keys are errors)."""
    doc = read_document(path, "known-objects file")
    extra = sorted(set(doc) - {"object"})
    if extra:
        raise ConfigError(f"{path}: unknown tables {extra}; allowed: ['object']")
    rows = doc.get("object", [])
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{path}: no [[object]] tables (each: label, and mass/friction/restitution where known)")
    out = [from_mapping(KnownObject, row, f"{path}: [[object]] {i + 1}") for i, row in enumerate(rows)]
    labels = [o.label for o in out]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"{path}: an object is listed twice: {labels}")
    return out


def objects_toml(objects: list[KnownObject]) -> str:
    lines = []
    for o in objects:
        lines += ["[[object]]", f'label = "{o.label}"']
        lines += [f"{k} = {v!r}" for k, v in asdict(o).items() if k != "label" and v is not None]
        lines.append("")
    return "\n".join(lines)


# -- estimators --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float
    n: int  # observations behind it

    def covers(self, x: float) -> bool:
        return self.lo <= x <= self.hi


def sd_interval(s: float, dof: int, level: float = LEVEL) -> tuple[float, float]:
    """Chi-square interval of a standard deviation estimated as `s` with `dof` degrees of freedom."""
    from scipy import stats  # here, not at the top: scipy.stats would add a second to every CLI verb's start

    a = (1 - level) / 2
    return s * math.sqrt(dof / stats.chi2.ppf(1 - a, dof)), s * math.sqrt(dof / stats.chi2.ppf(a, dof))


def offset(measured, truth, level: float = LEVEL) -> tuple[Estimate, Estimate]:
    """(bias, sd) of measured - truth: the mean with its t interval, the sample sd with its chi-square one.
    Needs two or more pairs."""
    r = np.asarray(measured, float) - np.asarray(truth, float)
    n = r.size
    if n < 2 or not np.all(np.isfinite(r)):
        raise ValueError(f"need two or more finite measurements of known values, got {n}")
    from scipy import stats

    mean, s = float(r.mean()), float(r.std(ddof=1))
    half = float(stats.t.ppf(1 - (1 - level) / 2, n - 1)) * s / math.sqrt(n)
    return Estimate(mean, mean - half, mean + half, n), Estimate(s, *sd_interval(s, n - 1, level), n)


def noise_sd(samples, chunk: int = 25, level: float = LEVEL) -> Estimate:
    """Per-axis noise sd of a still sensor's stream ((N,) or (N, axes)): the pooled sd about each chunk's own
    line (so a slow drift of the signal is not counted as noise). Exact repeats of the previous sample (the
    stream re-sent a reading before a new one was taken) are dropped first."""
    x = np.asarray(samples, float)
    x = x.reshape(len(x), -1)
    keep = np.r_[True, np.any(np.diff(x, axis=0) != 0, axis=1)]
    x = x[keep]
    k = len(x) // chunk
    if k < 1:
        raise ValueError(f"need at least {chunk} distinct samples of a still sensor, got {len(x)}")
    blocks = x[: k * chunk].reshape(k, chunk, x.shape[1])
    u = np.arange(chunk) - (chunk - 1) / 2  # each chunk's own line (mean and slope) is the signal
    resid = blocks - blocks.mean(axis=1, keepdims=True)
    resid = resid - u[None, :, None] * (np.einsum("j,kjc->kc", u, resid) / (u @ u))[:, None, :]
    dof = k * (chunk - 2) * x.shape[1]
    s = float(np.sqrt(np.sum(resid**2) / dof))
    return Estimate(s, *sd_interval(s, dof, level), int(k * chunk))


def push_noise_factor(log_ratios, push_sd, gain_sd: float, dof: float, level: float = LEVEL) -> Estimate:
    """The factor k by which pushes' scatter about the twin at the truth exceeds the noise model's: each push's
    log ratio measured/twin has a variance of k^2 t push_sd^2 + gain_sd^2 (push_sd: the model's sigma over its
    prediction; t: a Student-t's variance per unit scale with `dof`; gain_sd: the object's systematic gain), so
    k^2 = mean((r^2 - gain_sd^2) / (t push_sd^2)), with a chi-square interval on its n pushes (at least 0)."""
    r, s = np.asarray(log_ratios, float), np.asarray(push_sd, float)
    n = r.size
    if n < 2 or not (np.all(np.isfinite(r)) and np.all(s > 0)):
        raise ValueError(f"need two or more pushes against the twin, got {n}")
    t = dof / (dof - 2)
    k2 = max(0.0, float(np.mean((r**2 - gain_sd**2) / (t * s**2))))
    k = math.sqrt(k2)
    lo, hi = sd_interval(k, n, level)
    return Estimate(k, lo, hi, n)


def tracking_lag(t_cmd, cmd, t_meas, meas, max_lag_s: float = 1.0, step_s: float = 0.002) -> float:
    """Seconds by which `meas` trails `cmd` (both (N,) or (N, joints), on their own clocks): the shift L that
    best fits meas(t) to cmd(t - L) (least squares, commands held between samples, over the times both
    cover). A servo that also limits its speed trails further on long moves; this is the move's mean lag."""
    t_cmd, t_meas = np.asarray(t_cmd, float), np.asarray(t_meas, float)
    cmd = np.asarray(cmd, float).reshape(len(t_cmd), -1)
    meas = np.asarray(meas, float).reshape(len(t_meas), -1)
    if len(t_cmd) < 2 or len(t_meas) < 2:
        raise ValueError("need two or more commands and measurements")
    best, best_err = 0.0, math.inf
    for lag in np.arange(0.0, max_lag_s + 1e-12, step_s):
        t = t_meas - lag
        ok = (t >= t_cmd[0]) & (t <= t_cmd[-1])
        if ok.sum() < max(5, len(t_meas) // 4):
            break
        i = np.searchsorted(t_cmd, t[ok], side="right") - 1
        err = float(np.mean((meas[ok] - cmd[i]) ** 2))
        if err < best_err - 1e-15:
            best, best_err = float(lag), err
    return best


# -- the calibration file ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TwinCalibration:
    """The figures fitted to one rig (`[twin]` in its TOML file); `*_lo`/`*_hi`: 95 % intervals."""

    rig: str = ""  # which rig (the graph's name)
    force_noise_N: float | None = None
    force_noise_lo: float | None = None
    force_noise_hi: float | None = None
    force_samples: int = 0
    force_rate_hz: float | None = None  # distinct readings per second of the still stream
    weigh_sd_kg: float | None = None
    weigh_sd_lo: float | None = None
    weigh_sd_hi: float | None = None
    weigh_bias_kg: float | None = None
    weigh_bias_lo: float | None = None
    weigh_bias_hi: float | None = None
    weighs: int = 0
    weigh_reported_kg: float | None = None  # rms of the sigma the weigh skill reported itself (sensor noise)
    tracking_lag_s: float | None = None
    # pushes of objects of known mass and friction against the twin at their truth: the factor by which the push's
    # noise (the noise model's floor and rel, with its gain) must grow to cover them (`push_noise_factor`)
    push_noise_factor: float | None = None
    push_noise_lo: float | None = None
    push_noise_hi: float | None = None
    pushes: int = 0

    def noise_scales(self) -> dict[str, float]:
        """{measurement: factor} the rig's scatter multiplies the noise model's floor and rel by (never below 1:
        a rig calmer than the sim keeps the sim's figures)."""
        if self.push_noise_factor is None or self.push_noise_factor <= 1.0:
            return {}
        return {"force_mean_N": self.push_noise_factor}

    def noise_overrides(self) -> dict[str, dict[str, float]]:
        """{NoiseModel field: {measurement: value}} for the figures the noise model has a place for. A weigh's
        floor is what its scatter about the true mass holds beyond the sigma the skill reports (the noise model
        adds that one itself), and its bias (which the twin does not model): floor² = max(0, sd² - reported²)
        + bias²."""
        out: dict[str, dict[str, float]] = {}
        if self.weigh_sd_kg is not None:
            unreported = max(0.0, self.weigh_sd_kg**2 - (self.weigh_reported_kg or 0.0) ** 2)
            out.setdefault("floor", {})["mass_kg"] = math.sqrt(unreported + (self.weigh_bias_kg or 0.0) ** 2)
        return out

    def noise_additions(self) -> dict[str, float]:
        """{measurement: sd} the rig adds to the noise model's floor in quadrature: the F/T noise as it reaches
        a push's mean force (the sim-fitted floor was fitted on the sim's own sensor; adding, not replacing,
        errs wide)."""
        if self.force_noise_N is None:
            return {}
        return {"force_mean_N": push_force_noise(self.force_noise_N, self.force_rate_hz or DEFAULT_RATE_HZ)}

    def to_toml(self) -> str:
        lines = ["# fitted by `loopylab lab calibrate-twin` (docs/hardware.md)", "[twin]"]
        for k, v in asdict(self).items():
            if v is not None:
                lines.append(f'{k} = "{v}"' if isinstance(v, str) else f"{k} = {v!r}")
        return "\n".join(lines) + "\n"

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_toml())
        return p

    @classmethod
    def load(cls, path: str | Path) -> TwinCalibration:
        if not Path(path).is_file():
            raise ConfigError(f"{path}: no such twin calibration file (run `loopylab lab calibrate-twin`)")
        return load_table(cls, path, "twin")


DEFAULT_RATE_HZ = 100.0  # an FT300's stream, where the calibration did not measure it


def push_window_s() -> float:
    """The shortest window a push of the grid averages its force over (seconds): the steady share of its
    distance at its fastest speed, over every arm's push levels."""
    from loopylab.lab import experiments
    from loopylab.world import protocols as P

    dists = [d for ws in (experiments.PANDA, *experiments.SMALL_ARMS.values()) for d in ws.push_distances]
    return min(dists) * (P.STEADY[1] - P.STEADY[0]) / max(experiments.PUSH_SPEEDS)


def push_force_noise(sd_n: float, rate_hz: float) -> float:
    """The sd a sensor's per-reading force noise `sd_n` (N, per axis) leaves on a push's mean force: the
    mean of the readings in the shortest push window (at least one)."""
    return sd_n / math.sqrt(max(1.0, rate_hz * push_window_s()))


def default_path(graph: str | Path) -> Path:
    """Where a hardware graph's calibration goes by default: graphs/so101.toml -> graphs/so101.twin.toml."""
    g = Path(graph)
    return g.with_name(g.stem + ".twin.toml")


# -- the hook ----------------------------------------------------------------------------------------------------
def use(path: str | Path | None) -> TwinCalibration | None:
    """Make `path` the calibration the lab loads in this process and its children (None: none); checks it."""
    if path is None:
        os.environ.pop(ENV, None)
        return None
    cal = TwinCalibration.load(path)
    os.environ[ENV] = str(Path(path).resolve())
    return cal


def active() -> TwinCalibration | None:
    """The calibration `use` chose (None when none)."""
    path = os.environ.get(ENV, "")
    return TwinCalibration.load(path) if path else None


def noise_overrides() -> dict[str, dict[str, float]]:
    """The active calibration's overrides of the noise model ({} when none)."""
    cal = active()
    return cal.noise_overrides() if cal is not None else {}


def calibrated(noise):
    """A copy of a noise model (anything with the dict fields the overrides name, and `floor`) with the active
    rig calibration's figures in place of its own, and its sensor noise added to the floor; the model itself
    when no calibration is active."""
    cal = active()
    if cal is None:
        return noise
    out = copy.deepcopy(noise)
    for name, values in cal.noise_overrides().items():
        getattr(out, name).update(values)
    for key, k in cal.noise_scales().items():
        out.floor[key], out.rel[key] = k * out.floor[key], k * out.rel[key]
    for key, sd in cal.noise_additions().items():
        out.floor[key] = math.hypot(out.floor.get(key, 0.0), sd)
    return out


def lag_s() -> float:
    """The active calibration's tracking lag (seconds; 0 when none is in use or it was not fitted)."""
    cal = active()
    return float(cal.tracking_lag_s or 0.0) if cal is not None else 0.0
