"""Where the centre of mass is: the `com` question kind ("where is the centre of mass of OBJ within TOL mm") and
the model family `sits` ("which model explains how OBJ sits": the centre of mass at the centre, or offset).

What measures it: a drop holds the object still before letting go, and the wrist torque of its weight gives the
horizontal offset of its centre of mass in the object's own frame (`world.protocols.analyze_com`; the notebook
writes it to the mm: `bounce B com X Y [Z]`). The reading's error is the F/T sensor's torque error over the
lever's weight, so a light object reads worse: on 33 dev drops (16 worlds, 1000010-1000025; seeds' masses
0.08-0.5 kg) a Student-t (4 dof) fit of the per-axis error gives sd = sqrt(FLOOR^2 + (TORQUE_SD / (m g))^2) with
TORQUE_SD 2.7 mN m (the FT 300-S's zero drift, which a reading less its baseline cannot average away) and a
floor of 0.3 mm, plus the notebook's 1 mm rounding. The mass is a latent of the belief (a weigh measures it).

The belief holds signed quantities, which the default posterior's log-space columns cannot: a grid over (cx, cy)
in the object's frame times a grid of masses (log-spaced) times how the block turns between drops (a frame mix,
and the frame it reads in now: a hidden Markov chain, so that a block that tumbled and stays tumbled is read as
one), exact Bayes on it (no particles: the same measurements give the same numbers). A model is a set of allowed
(cx, cy) cells:

    free      the seeded worlds' box, |cx|, |cy| <= COM_SHARE x size             (the `com` kind)
    centred   (0, 0) alone                                                       (`sits`)
    offset    |cx| or |cy| in COM_OFF_SHARE x size, the other within COM_SHARE   (`sits`; as the worlds draw it)

Each drop updates every model's evidence (the log marginal likelihood of its reading) after a posterior
predictive check of the reading's distance from the centre, |(x, y)|: outside the model's central 99.8 % range
it refutes the model (`rejected OBJ MODEL by com R outside LO HI`). Experiments are chosen by their expected
information about (cx, cy) (`com`) or about the model (`sits`), by Monte Carlo over the grid: a drop reads the
offset, a weigh pins the mass and so how far each reading may be trusted.

    com red_block x -3.2 1.1 y 4.0 1.0 mm                                   (a `com` conclusion, 90 % half-widths)
    model red_block offset 0.99; com red_block x 8.1 1.3 y -0.4 1.2 mm      (a `sits` conclusion: the explanation)
    model red_block centred 0.96
"""

from __future__ import annotations

import math

import numpy as np

from loopylab.lab import kinds
from loopylab.lab.beliefs import DEFAULT_PRIOR, Answer, Measurement, Posterior, best_estimate, interval_halfwidth
from loopylab.lab.design import Decision, DesignConfig
from loopylab.lab.models import MODEL_KNOWN, PPC_LEVEL, model_row
from loopylab.lab.questions import subject_of
from loopylab.world import notebook as g
from loopylab.world.scene import COM_OFF_SHARE, COM_SHARE

TORQUE_SD = 2.7e-3  # N m: the torque error of a com reading (dev drops, module docstring)
FLOOR_SD = 0.3e-3  # m: the reading's error however heavy the object
ROUND_SD = 1e-3 / math.sqrt(12)  # m: the notebook writes the offset to the mm
DOF = 4.0  # Student-t: a reading after the block tumbled or slipped in the grip is off by more
GRAVITY = 9.81
GRID = 41  # cells per axis
N_MASS = 8  # mass levels (log-spaced over the hypothesis's range)
COM_TOLERANCE = 0.003  # m: the `com` kind's default tolerance per axis
COM_SKILLS = ("drop", "weigh")  # a drop reads the offset; a weigh the mass, and so the reading's error
# After its first drop a block may sit in another of a cube's 24 frames: perception tells a cube's yaw only modulo
# a quarter turn, so a block that spun past 45 degrees as it fell reads its offset turned about z (dev 1000032,
# 1000035 read (-cx, -cy) on their second drop), and one that tumbled reads it about another axis. On dev, a later
# drop read in the frame of the first with probability 1 - TURNED (about half the later dev drops read turned), in
# one of the 3 other yaws with TURNED x YAW_SHARE, in one of the 20 tumbled frames otherwise: the prior mean of the
# belief's frame mix (MIXES below), which each block's readings then move. A frame's reading is two
# rows (a, sa, b, sb) of a signed permutation of (cx, cy, cz): x reads sa c_a, y reads sb c_b; cz, not on the
# grid, is taken as the seeded worlds' (+-COM_SHARE / 2 of the size).
TURNED = 0.5
YAW_SHARE = 0.8
FRAMES = tuple((a, sa, b, sb) for a in range(3) for b in range(3) if a != b for sa in (1, -1) for sb in (1, -1))


def _is_yaw(f: tuple[int, int, int, int]) -> bool:
    """Whether frame f turns the block about z alone (its third row, r0 x r1, is +e_z)."""
    a, sa, b, sb = f
    return {a, b} == {0, 1} and sa * sb * (1 if a == 0 else -1) > 0


_YAW = np.array([_is_yaw(f) for f in FRAMES])
# How often a later drop reads turned differs from block to block: a light block with a far offset tumbles on most
# drops (train world 23, (-13.7, -7.1) mm: 6 of its 8 later drops read tumbled, which dev's 10 % made outliers and
# pulled y to 0). So the mix (same frame, a yaw, a tumble) is a latent of the belief, learned from the readings:
# MIXES, a lattice of the simplex (steps of a quarter) with a floor, under a Dirichlet prior of dev's shares
# (concentration 3: its mean is (0.50, 0.37, 0.13)).
MIX_STEPS, MIX_FLOOR, MIX_CONCENTRATION = 4, 0.05, 3.0
_LATTICE = np.array([(a, b, MIX_STEPS - a - b) for a in range(MIX_STEPS + 1) for b in range(MIX_STEPS + 1 - a)], float)
MIXES = MIX_FLOOR + (1 - 3 * MIX_FLOOR) * _LATTICE / MIX_STEPS  # (S, 3): p(same), p(a yaw), p(a tumble)
_ALPHA = MIX_CONCENTRATION * np.array([1 - TURNED, TURNED * YAW_SHARE, TURNED * (1 - YAW_SHARE)])
_MIX_LOGP = ((_ALPHA - 1) * np.log(MIXES)).sum(axis=1)
MIX_LOGPRIOR = _MIX_LOGP - float(np.log(np.exp(_MIX_LOGP - _MIX_LOGP.max()).sum()) + _MIX_LOGP.max())


def _rotation(f: tuple[int, int, int, int]) -> np.ndarray:
    """Frame f as the rotation taking the block's axes to the reading's: rows sa e_a, sb e_b, their cross."""
    a, sa, b, sb = f
    r = np.zeros((3, 3))
    r[0, a], r[1, b] = sa, sb
    r[2] = np.cross(r[0], r[1])
    return r


def _turn_probs(mixes: np.ndarray) -> np.ndarray:
    """(S, F, F): each mix's p(next frame g | frame f): the turn R_g R_f^T is none, a yaw, or a tumble."""
    rot = np.array([_rotation(f) for f in FRAMES])
    turn = np.einsum("gij,fkj->fgik", rot, rot)  # turn[f, g] = R_g R_f^T
    ident = np.all(np.isclose(turn, np.eye(3)), axis=(2, 3))
    yaw = np.isclose(turn[:, :, 2, 2], 1.0) & ~ident  # about z alone
    share = np.where(ident, 0, np.where(yaw, 1, 2))  # (F, F) the class of each step
    per = mixes / np.array([1.0, 3.0, 20.0])  # each class's probability spread over its turns
    return per[:, share]


TURN_P = _turn_probs(MIXES)
HELD_OUT_DROP = 0.15  # m: the explanation's held-out drop (between the grid's heights)
READ_SD = 2.5e-3  # m: a com reading's spread over the dev worlds (all masses): part of the prediction error's unit


def reading_sd(mass: np.ndarray) -> np.ndarray:
    """The sd of one axis of a com reading (m) for an object of `mass` (kg)."""
    return np.sqrt(FLOOR_SD**2 + (TORQUE_SD / (np.asarray(mass) * GRAVITY)) ** 2 + ROUND_SD**2)


def _t_logpdf(r: np.ndarray, sd: np.ndarray) -> np.ndarray:
    c = math.lgamma((DOF + 1) / 2) - math.lgamma(DOF / 2) - 0.5 * math.log(DOF * math.pi)
    return c - np.log(sd) - 0.5 * (DOF + 1) * np.log1p((r / sd) ** 2 / DOF)


def _posterior(w: np.ndarray, loglik: np.ndarray) -> tuple[np.ndarray, float]:
    """Bayes on a grid: (the normalised weights w x exp(loglik), log of their sum)."""
    top = float(loglik.max())
    post = w * np.exp(loglik - top)
    z = float(post.sum())
    return post / z, math.log(max(z, 1e-300)) + top


def model_cells(model: str, size: float) -> np.ndarray:
    """(K, 2) the (cx, cy) cells a model allows (m), on one grid shared by the models of a size."""
    if model == "centred":
        return np.zeros((1, 2))
    half = (COM_OFF_SHARE[1] if model == "offset" else COM_SHARE) * size
    ax = np.linspace(-half, half, GRID)
    xy = np.stack(np.meshgrid(ax, ax, indexing="ij"), axis=-1).reshape(-1, 2)
    if model == "offset":
        a = np.abs(xy) / size
        far = (a >= COM_OFF_SHARE[0]) & (a <= COM_OFF_SHARE[1])
        keep = (far[:, 0] & (a[:, 1] <= COM_SHARE)) | (far[:, 1] & (a[:, 0] <= COM_SHARE))
        xy = xy[keep]
    return xy


class ComModel:
    """One model's belief, exact on a grid: the weights of its cells x the mass levels x the frame mixes (MIXES)
    x the frame the block reads in now (FRAMES; a hidden Markov chain over the drops), and its log evidence."""

    def __init__(self, name: str, cells: np.ndarray, masses: np.ndarray, size: float):
        self.name, self.cells, self.masses = name, cells, masses
        self.sd = reading_sd(masses)  # (M,)
        self.sd_z = 0.0 if name == "centred" else COM_SHARE / 2 * size / math.sqrt(3)  # cz's sd (uniform)
        self.w = np.zeros((len(cells), len(masses), len(MIXES), len(FRAMES)))
        self.w[..., 0] = np.exp(MIX_LOGPRIOR) / (len(cells) * len(masses))  # the first drop reads in its own frame
        self.log_evidence = 0.0

    def predicted(self, m: Measurement) -> np.ndarray:
        """The weights before `m` is read: a later drop's frame moved one step along each mix's chain."""
        if not (m.com is not None and m.experiment.skill == "drop" and m.repeat):
            return self.w
        k, mm, s, f = self.w.shape
        out = np.empty_like(self.w)
        for i in range(s):
            out[:, :, i, :] = (self.w[:, :, i, :].reshape(k * mm, f) @ TURN_P[i]).reshape(k, mm, f)
        return out

    def loglik(self, m: Measurement, frames: np.ndarray | None = None) -> np.ndarray:
        """log p(measurement | cell, mass, frame), (K, M, 1, F) (or F = len(frames)); zero for what it does not
        measure."""
        idx = np.arange(len(FRAMES)) if frames is None else frames
        out = np.zeros((len(self.cells), len(self.masses), 1, len(idx)))
        if m.com is not None and m.experiment.skill == "drop":
            for j, f in enumerate(idx):
                out[:, :, 0, j] = self._frame_loglik(m.com, FRAMES[f])
        if "mass_kg" in m.values:
            sd = np.hypot(0.005, 0.02 * self.masses)  # a scale's reading (NoiseModel's floor and 2 %)
            out += _t_logpdf(m.values["mass_kg"] - self.masses, sd)[None, :, None, None]
        return out

    def _frame_loglik(self, y: tuple[float, ...], frame: tuple[int, int, int, int]) -> np.ndarray:
        """log p(reading (x, y) | cell, mass), (K, M), when the block sits in `frame` (a, sa, b, sb): x reads
        sa c_a, y sb c_b."""
        out = np.zeros((len(self.cells), len(self.masses)))
        for v, ax, sign in ((y[0], frame[0], frame[1]), (y[1], frame[2], frame[3])):
            if ax < 2:
                out += _t_logpdf(v - sign * self.cells[:, ax][:, None], self.sd[None, :])
            else:  # cz: not on the grid, its spread added to the reading's
                out += _t_logpdf(np.full((1, 1), v), np.hypot(self.sd, self.sd_z)[None, :])
        return out

    def update(self, m: Measurement) -> None:
        self.w, z = _posterior(self.predicted(m), self.loglik(m))
        self.log_evidence += z

    def xy(self) -> tuple[np.ndarray, np.ndarray]:
        """(cells (K, 2), their marginal weights (K,))."""
        return self.cells, self.w.sum(axis=(1, 2, 3))

    def mix(self) -> np.ndarray:
        """The posterior mean of the frame mix: (p(same frame), p(a yaw), p(a tumble)) for a later drop."""
        return self.w.sum(axis=(0, 1, 3)) @ MIXES

    def mass(self) -> tuple[float, float]:
        p = self.w.sum(axis=(0, 2, 3))
        mu = float(np.sum(p * self.masses))
        return mu, float(np.sqrt(np.sum(p * (self.masses - mu) ** 2)))

    def sample_readings(self, k: int, rng: np.random.Generator, repeat: bool) -> np.ndarray:
        """(k, 2) drop readings the model predicts now (noise, a later drop's turn along the chain, and the
        notebook's rounding included)."""
        flat = self.w.ravel()
        idx = rng.choice(flat.size, k, p=flat / flat.sum())
        ci, mi, si, f = np.unravel_index(idx, self.w.shape)
        xyz = np.hstack([self.cells[ci], self.sd_z * rng.standard_normal((k, 1))])
        if repeat:  # each sample's next frame from its mix and frame (inverse CDF)
            cdf = np.cumsum(TURN_P[si, f], axis=1)
            f = np.minimum((rng.random((k, 1)) * cdf[:, -1:] > cdf).sum(axis=1), len(FRAMES) - 1)
        return _read(xyz, f, self.sd[mi], rng)

    def check(self, m: Measurement, rng: np.random.Generator) -> g.Rejection | None:
        """The posterior predictive check of a drop's reading (before the model learns from it): its distance
        from the centre outside the model's central PPC_LEVEL range refutes the model."""
        if m.com is None or m.experiment.skill != "drop":
            return None
        r = np.hypot(*self.sample_readings(4000, rng, m.repeat).T)
        tail = (1 - PPC_LEVEL) / 2
        lo, hi = np.quantile(r, [tail, 1 - tail])
        y = float(math.hypot(m.com[0], m.com[1]))
        if lo - 1e-9 <= y <= hi + 1e-9:
            return None
        v, a, b = (float(g.fmt(x, 3)) for x in (y, lo, hi))
        return g.Rejection(m.experiment.object, self.name, "com", v, a, b)


def _mass_levels(hypothesis: g.Hypothesis | None, obj: str) -> np.ndarray:
    lo, hi = DEFAULT_PRIOR["mass"]
    for r in hypothesis.ranges if hypothesis else ():
        if r.object == obj and r.param == "mass" and r.hi > r.lo > 0:
            lo, hi = r.lo, r.hi
    return np.geomspace(lo, hi, N_MASS)


class ComPosterior(Posterior):
    """The belief of a centre-of-mass question: `ComModel`s of the subject (one for `com`, two for `sits`)."""

    model_names: tuple[str, ...] = ("free",)

    def reset(self, hypothesis: g.Hypothesis | None) -> None:
        # the generic particles (what the notebook's generic readers look at) are not taught drops: a com
        # reading is this belief's, and a drop's bounce would build a twin table per reading for nothing
        kept, self.measurements = self.measurements, []
        super().reset(hypothesis)
        self.measurements = kept
        obj = self.question.object
        size = self.forward.scene.object(obj).size
        masses = _mass_levels(hypothesis, obj)
        self.models = {k: ComModel(k, model_cells(k, size), masses, size) for k in self.model_names}
        self.rejected: dict[str, g.Rejection] = {}
        self.new_rejections: list[g.Rejection] = []
        for m in kept:
            self._learn(m)

    def update(self, m: Measurement) -> None:
        if m.experiment.object != self.question.object or m.experiment.skill not in COM_SKILLS:
            return
        m.repeat = self.repeats(m.experiment)
        self.measurements.append(m)
        self._learn(m)

    def _learn(self, m: Measurement) -> None:
        rng = np.random.default_rng([self.seed, 0xC0C, self.resets, len(self.measurements)])
        self.new_rejections = []
        for k in self.live:
            op = self.models[k]
            rej = op.check(m, rng) if len(self.model_names) > 1 else None
            op.update(m)
            if rej is not None:
                self.rejected[k] = rej
                self.new_rejections.append(rej)

    @property
    def live(self) -> list[str]:
        return [k for k in self.models if k not in self.rejected]

    def probabilities(self) -> dict[str, float]:
        out = dict.fromkeys(self.models, 0.0)
        live = self.live
        if live:
            le = np.array([self.models[k].log_evidence for k in live])
            p = np.exp(le - le.max())
            out.update(zip(live, map(float, p / p.sum())))
        return out

    def best(self) -> tuple[str | None, float]:
        probs = self.probabilities()
        if not self.live:
            return None, 0.0
        top = max(self.live, key=lambda k: probs[k])
        return top, probs[top]

    # -- what the notebook says -----------------------------------------------------------------------------
    def com_clause(self, model: str, level: float, tol: float | None = None) -> tuple[g.ComOffset, float]:
        """The model's (cx, cy) in mm: posterior means and sds (`level` 0), or the point that is most probably
        within `tol` on both axes with half-widths holding `level` of each; and that probability."""
        cells, w = self.models[model].xy()
        obj, est, half = self.question.object, [], []
        for a in (0, 1):
            v = cells[:, a]
            if level:
                c = best_estimate(v, w, tol, relative=False)[0] if tol else float(np.sum(w * v))
                est.append(c)
                half.append(interval_halfwidth(v, w, c, level))
            else:
                mu = float(np.sum(w * v))
                est.append(mu)
                half.append(float(np.sqrt(np.sum(w * (v - mu) ** 2))))
        inside = float(w[np.all(np.abs(cells - np.array(est)) <= (tol or 0.0) + 1e-12, axis=1)].sum()) if tol else 0.0
        mm = [float(g.fmt(v * 1000, g.COM_DECIMALS)) for v in (est[0], half[0], est[1], half[1])]
        return g.ComOffset(obj, *mm), inside

    def belief(self) -> g.Belief:
        obj, clauses = self.question.object, []
        if len(self.model_names) > 1:
            clauses += [g.ModelProb(obj, k, float(g.fmt(p, 2))) for k, p in self.probabilities().items()]
            clauses += self.new_rejections
        for k in self.live:
            if k != "centred":
                clauses.append(self.com_clause(k, 0.0)[0])
        top = self.best()[0]
        if top is not None:  # the mass as the likeliest model reads it (a refuted model's says little)
            mu, sd = self.models[top].mass()
            clauses.append(g.Estimate("mass", obj, float(g.fmt(mu, 3)), float(g.fmt(sd, 3))))
        return g.Belief(tuple(clauses))

    def answer(self, confidence: float = 0.9) -> Answer:
        clause, p = self.com_clause("free", confidence, self.question.tolerance)
        return Answer(g.Conclusion((clause,)), p)

    # -- experiment design ------------------------------------------------------------------------------------
    def target_entropy(self, cells: dict[str, np.ndarray], probs: np.ndarray) -> float:
        """The entropy (nats) of what the question asks, from each live model's cell weights and the models'
        probabilities: (cx, cy) on the grid for `com`."""
        return _entropy(cells["free"])

    def eig_scores(self, candidates: list[g.Experiment], cfg: DesignConfig, rng, last_sigma: dict, scorer=None):
        """Each candidate's expected information about the question's target (nats), by Monte Carlo: outcomes
        simulated from the belief, each outcome's posterior entropy against the prior's."""
        n_out = max(cfg.n_outer // 2, 16)
        cache: dict[str, float] = {}
        out = []
        for e in candidates:
            if e.object != self.question.object or e.skill not in COM_SKILLS:
                out.append(0.0)
                continue
            if e.skill not in cache:
                cache[e.skill] = self._eig(e, n_out, rng)
            out.append(cache[e.skill])
        return np.array(out)

    def _eig(self, exp: g.Experiment, n_out: int, rng: np.random.Generator) -> float:
        live = self.live
        prob = self.probabilities()
        probs = np.array([prob[k] for k in live])
        if not live or probs.sum() <= 0:
            return 0.0
        h0 = self.target_entropy({k: self.models[k].xy()[1] for k in live}, probs)
        repeat = self.repeats(exp)
        tables = {k: _design_table(self.models[k], exp, repeat) for k in live}
        total = 0.0
        for i in rng.choice(len(live), n_out, p=probs / probs.sum()):
            op = self.models[live[i]]
            y = _simulate(op, *tables[live[i]], exp, rng, repeat)
            cells, le = {}, []
            for k in live:
                table, frames = tables[k]
                post, z = _posterior(table, self.models[k].loglik(y, frames))
                cells[k] = post.sum(axis=(1, 2, 3))
                le.append(math.log(max(prob[k], 1e-300)) + z)
            le_arr = np.array(le)
            p = np.exp(le_arr - le_arr.max())
            total += self.target_entropy(cells, p / p.sum())
        return max(h0 - total / n_out, 0.0)

    def choose(self, candidates: list[g.Experiment], cfg: DesignConfig, rng: np.random.Generator, last_sigma: dict):
        """The candidate worth most information net of its cost (a drop's heights read the offset alike)."""
        eig = self.eig_scores(candidates, cfg, rng, last_sigma)
        cost = np.array([cfg.cost(e) for e in candidates])
        i = int(np.argmax(eig - cost))
        return Decision(candidates[i], float(eig[i]), float(eig[i] - cost[i]), eig, False, tuple(candidates), cost)


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-np.sum(p * np.log(p)))


# design scores a drop's outcomes in the frames that hold DESIGN_MASS of the prediction alone (after a first
# drop under the prior: the 4 yaws, 0.87), 6x cheaper than all 24, so that more outcomes fit in a decision (16
# outcomes gave a light block's drop 0.006-0.09 nats; 64, 0.06-0.09)
DESIGN_MASS = 0.85


def _design_table(op: ComModel, exp: g.Experiment, repeat: bool) -> tuple[np.ndarray, np.ndarray]:
    """The model's weights before `exp`'s reading, (K, M, 1, F'), the mixes summed out, cut to the likeliest
    frames (F', renormalised), and those frames."""
    if exp.skill != "drop":
        return op.w.sum(axis=(2, 3))[:, :, None, None], np.array([0])
    pred = op.predicted(Measurement(exp, {}, {}, (0.0, 0.0), repeat=repeat)).sum(axis=2, keepdims=True)
    pf = pred.sum(axis=(0, 1, 2))
    order = np.argsort(-pf)
    frames = np.sort(order[: int(np.searchsorted(np.cumsum(pf[order]), DESIGN_MASS * pf.sum())) + 1])
    table = pred[..., frames]
    return table / table.sum(), frames


def _simulate(
    op: ComModel, table: np.ndarray, frames: np.ndarray, exp: g.Experiment, rng: np.random.Generator, repeat: bool
) -> Measurement:
    """One outcome of `exp` drawn from the model's design table: a weigh's mass, or a drop's reading."""
    ci, mi, _, fi = np.unravel_index(rng.choice(table.size, p=table.ravel()), table.shape)
    if exp.skill == "weigh":
        mass = op.masses[mi] + float(np.hypot(0.005, 0.02 * op.masses[mi])) * rng.standard_normal()
        return Measurement(exp, {"mass_kg": float(mass)}, {})
    xyz = np.append(op.cells[ci], op.sd_z * rng.standard_normal())[None]
    xy = _read(xyz, np.array([frames[fi]]), op.sd[mi : mi + 1], rng)[0]
    return Measurement(exp, {}, {}, (float(xy[0]), float(xy[1])), repeat=repeat)


def _read(xyz: np.ndarray, frames: np.ndarray, sd: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(k, 2) drop readings of centres `xyz` (k, 3) seen in `frames` (k,): each frame's signed pair of axes, the
    reading's t noise (sd: the model's whole scatter, of which the notebook's rounding is the rest), rounded."""
    k = len(frames)
    fr = np.array(FRAMES)[frames]
    read = np.stack([fr[:, 1] * xyz[np.arange(k), fr[:, 0]], fr[:, 3] * xyz[np.arange(k), fr[:, 2]]], axis=1)
    sd = np.sqrt(np.asarray(sd, float) ** 2 - ROUND_SD**2)
    return np.round(read + sd[:, None] * rng.standard_t(DOF, (k, 2)), 3)


class SitsPosterior(ComPosterior):
    """The belief of "which model explains how OBJ sits": the centred and the offset model, with their evidence
    and rejections; the design targets the model."""

    model_names = ("centred", "offset")

    def target_entropy(self, cells: dict[str, np.ndarray], probs: np.ndarray) -> float:
        """The model's entropy; once the offset model holds MODEL_KNOWN, its (cx, cy)'s: the explanation's."""
        top, p_top = self.best()
        if top == "offset" and p_top >= MODEL_KNOWN and top in cells:
            return _entropy(cells[top])
        return _entropy(probs)

    def answer(self, confidence: float = 0.9) -> Answer:
        """The model, and for an offset its (cx, cy); sure as the model times its offset's being within the `com`
        kind's tolerance (an offset known with its place still broad explains little)."""
        obj = self.question.object
        top, p = self.best()
        if top is None:  # every model was refuted: nothing to answer, and sure of that
            return Answer(g.Conclusion((g.Unexplained(obj),)), 1.0)
        head = g.ModelProb(obj, top, float(g.fmt(p, 2)))
        if top == "centred":
            return Answer(g.Conclusion((head,)), p)
        clause, inside = self.com_clause(top, confidence, COM_TOLERANCE)
        return Answer(g.Conclusion((head, clause)), p * inside)


# -- grading -----------------------------------------------------------------------------------------------------


def true_offset(truth: dict, obj: str) -> tuple[float, float]:
    c = truth[obj].get("com_offset") or (0.0, 0.0, 0.0)
    return float(c[0]), float(c[1])


def true_model(truth: dict, obj: str) -> str:
    return "centred" if max(map(abs, true_offset(truth, obj))) < 1e-6 else "offset"


def stated_offset(conclusion: g.Conclusion, obj: str) -> tuple[float, float] | None:
    """The (cx, cy) a conclusion states (m); (0, 0) for the centred model; None: it states none."""
    for a in conclusion.answers:
        if isinstance(a, g.ComOffset) and a.object == obj:
            return a.x / 1000, a.y / 1000
    if any(isinstance(a, g.ModelProb) and a.object == obj and a.model == "centred" for a in conclusion.answers):
        return 0.0, 0.0
    return None


def _make_com(scene: g.Scene, seed: int, tol: float, budget: int | None) -> g.Question:
    return g.Question("com", (subject_of(scene),), tol, budget)


def _answer_com(question: g.Question, conclusion: g.Conclusion):
    return stated_offset(conclusion, question.object)


def _grade_com(question: g.Question, ans, truth: dict, outcome) -> kinds.Grade:
    """Right when both axes are within the tolerance; the error is the larger axis's (m)."""
    true = true_offset(truth, question.object)
    if ans is None:
        return kinds.Grade(False, math.inf, true, None)
    ans = tuple(float(v) for v in ans)  # a sealed run's steps carry their answers as text
    err = max(abs(a - t) for a, t in zip(ans, true))
    return kinds.Grade(err <= question.tolerance + 1e-9, err, true, tuple(ans))


def _row_com(question: g.Question, gr: kinds.Grade, notebook_text: str, world: dict) -> dict:
    ans = gr.answer if isinstance(gr.answer, tuple) else None
    return {
        "com_truth_mm": [round(v * 1000, 1) for v in gr.truth],
        "com_error_mm": [round(abs(a - t) * 1000, 1) for a, t in zip(ans, gr.truth)] if ans else None,
    }


def _make_sits(scene: g.Scene, seed: int, tol: float, budget: int | None) -> g.Question:
    return g.Question("sits", (subject_of(scene),), 0.0, budget)


def _answer_sits(question: g.Question, conclusion: g.Conclusion):
    for a in conclusion.answers:
        if isinstance(a, g.ModelProb) and a.object == question.object:
            return a.model
    return None


def _grade_sits(question: g.Question, ans, truth: dict, outcome) -> kinds.Grade:
    true = true_model(truth, question.object)
    return kinds.Grade(ans == true, 0.0 if ans == true else 1.0, true, ans)


def explanation_check(question: g.Question, notebook_text: str, world: dict) -> dict:
    """BoxingGym's communication measure: another agent holding the conclusion's explanation alone (the model
    and its offset) predicts the reading of a held-out drop (HELD_OUT_DROP, a height the grid never offers);
    the hidden world runs it. The error's unit is BoxingGym's: the reading's spread under the prior (`sits_unit`)."""
    conclusion = next((s.body for s in reversed(g.parse(notebook_text)) if s.kind == "conclusion"), None)
    pred = stated_offset(conclusion, question.object) if isinstance(conclusion, g.Conclusion) else None
    out: dict = {"held_out": None, "explanation_pred": None, "held_out_com": None, "explanation_pred_error": None}
    if pred is None:
        return out
    act = g.Experiment("drop", question.object, height=HELD_OUT_DROP)
    out.update(held_out=act.render(), explanation_pred=list(pred))
    measured = world["run"](act)
    if measured is not None and measured.get("com_x_m") is not None:
        y = (float(measured["com_x_m"]), float(measured["com_y_m"]))
        out["held_out_com"] = list(y)
        unit = sits_unit(world["scene"].object(question.object).size)
        out["explanation_pred_unit"] = unit
        out["explanation_pred_error"] = math.hypot(pred[0] - y[0], pred[1] - y[1]) / unit
    return out


def sits_unit(size: float) -> float:
    """The rms distance of a held-out reading from the prior's mean reading (0, 0): the models a half each, each
    uniform over its cells, plus a reading's spread on both axes (READ_SD: the predictor knows nothing of the
    mass). An error of 1 is what a guess knowing nothing the explanation says makes."""
    offset = model_cells("offset", size)
    second = 0.5 * float(np.mean(np.sum(offset**2, axis=1)))  # the centred model's cell is (0, 0)
    return math.sqrt(second + 2 * READ_SD**2)


def _com_posterior(question, forward, hypothesis, n, noise, seed) -> ComPosterior:
    return ComPosterior(question, forward, hypothesis, n, noise, seed)


def _sits_posterior(question, forward, hypothesis, n, noise, seed) -> SitsPosterior:
    return SitsPosterior(question, forward, hypothesis, n, noise, seed)


COM = kinds.register(
    kinds.QuestionKind(
        "com",
        COM_TOLERANCE,
        _make_com,
        _answer_com,
        _grade_com,
        posterior=_com_posterior,
        skills=COM_SKILLS,
        row=_row_com,
    )
)

SITS = kinds.register(
    kinds.QuestionKind(
        "sits",
        0.0,
        _make_sits,
        _answer_sits,
        _grade_sits,
        posterior=_sits_posterior,
        structure="com_model",
        skills=COM_SKILLS,
        right="the right model",
        row=model_row(explanation_check),
    )
)

__all__ = ["COM", "SITS", "ComModel", "ComPosterior", "SitsPosterior", "explanation_check", "reading_sd", "sits_unit"]
