"""Knowing what to buy: when an experiment the lab's own rig cannot run is worth more, per unit of cost, than the
best one it can, the lab drafts a bounty for it (docs/lab.md, "Buying data").

The value of an experiment is its expected information gain about the question's quantity (lab/design.py, the
same nested Monte Carlo). An observation bought from another rig is noisier than the lab's own (its noise model,
widened by the rig's noise factor: lab/rig_noise.py, `PRIOR_FACTOR` for a rig nobody knows yet), and it costs
money: the lab converts ETH to nats at its own exchange rate `eth_per_nat` (what it would pay for one nat
about its question). Own experiments cost robot time and risk (DesignConfig.cost, in nats).

    draft = draft_bounty(post, scene, lacks={"weigh", "lift", "drop", "place"})
    draft.terms  # BountyTerms fields: title, description, task_spec, acceptance, slots, reward_wei
    draft.why    # the comparison that made it: own best (eig, cost) vs the request's (eig, price)

The reward per slot is the information the lab expects from the whole request, in ETH, shared over the slots,
capped by the budget; the lab posts only when that reward reaches the market's going price per observation
(`price_eth`): below it no contributor would take the bounty, and the lab answers alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from loopylab.lab.beliefs import Posterior, predict_biased
from loopylab.lab.bounty_request import ExperimentRequest, ObjectDescription
from loopylab.lab.design import DesignConfig, _ObjectScorer, choose
from loopylab.lab.experiments import candidate_experiments, workspace
from loopylab.lab.forward import MEASURED, level_key
from loopylab.lab.rig_noise import PRIOR_FACTOR
from loopylab.world import notebook as g

GRIPPER_SKILLS = ("weigh", "lift", "drop", "place")  # an arm without a gripper cannot run these
WEI_PER_ETH = 10**18


@dataclass
class BuyConfig:
    eth_per_nat: float = 0.02  # what one nat about the question is worth to the lab
    price_eth: float = 0.001  # the market's going price of one submission (below it, nobody takes the bounty)
    budget_eth: float = 0.05  # the most the lab spends on one question
    slots: int = 2  # rigs asked (independent submissions: one liar cannot carry the answer)
    repetitions: int = 3  # runs of the experiment per submission
    noise_factor: float = PRIOR_FACTOR  # a rig nobody knows yet: its sigma is this times the lab's own

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BountyDraft:
    request: ExperimentRequest
    terms: dict[str, Any]  # BountyTerms fields but the deadline (set when posted)
    why: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"terms": self.terms, "why": self.why}


def external_eig(
    post: Posterior, exp: g.Experiment, n: int, factor: float, cfg: DesignConfig | None = None, seed: int = 0
) -> float:
    """EIG (nats) about the question of `n` independent observations of `exp` made by a rig whose noise is
    `factor` times the lab's own (nested Monte Carlo, as design.eig_scores)."""
    cfg = cfg or DesignConfig()
    rng = np.random.default_rng([seed, 0xB0B])
    post.forward.prepare([exp])
    state = post.rng.bit_generator.state  # drawing for a draft must not change the belief's own stream
    try:
        sc = _ObjectScorer(post, exp.object, cfg, rng, {})
        if sc.useless:
            return 0.0
        pred = predict_biased(post.forward, exp, sc.inner)
        loglik = np.zeros((len(sc.outer), len(sc.inner)))
        for key in MEASURED[exp.skill]:
            sig = post.noise.sigma(key, pred[key]) * factor
            for _ in range(n):
                y = post.noise.sample(pred[key][sc.outer], sig[sc.outer], rng, key)
                loglik += post.noise.logpdf(y[:, None], pred[key][None, :], sig[None, :], key)
        return sc.gain(loglik)
    finally:
        post.rng.bit_generator.state = state


def draft_bounty(
    post: Posterior,
    scene: g.Scene,
    lacks: set[str] | frozenset[str] | tuple[str, ...],
    cfg: BuyConfig | None = None,
    design: DesignConfig | None = None,
    failed: tuple[g.Experiment, ...] = (),
    seed: int = 0,
) -> BountyDraft | None:
    """The bounty worth posting now, or None: the rig can run every useful experiment, or the best one it cannot
    run is worth less per unit cost than its own best, or less than the market's price."""
    cfg, design = cfg or BuyConfig(), design or DesignConfig()
    question = post.question
    ws = workspace(getattr(post.forward.scene, "robot", None))  # the table this arm reaches, and its levels
    every = candidate_experiments(scene, question, exclude=failed, ws=ws)
    own = [e for e in every if e.skill not in lacks]
    missing = {level_key(e): e for e in every if e.skill in lacks}  # one experiment per level
    if not missing or question.kind not in g.PARAMS:
        return None
    own_eig = own_cost = 0.0
    if own:
        dec = choose(post, own, design, np.random.default_rng([seed, 0x0A]))
        own_eig, own_cost = dec.eig, dec.cost
    own_rate = own_eig / own_cost if own_cost > 0 else 0.0
    n = cfg.slots * cfg.repetitions
    scored = sorted(
        ((external_eig(post, e, n, cfg.noise_factor, design, seed), e) for e in missing.values()),
        key=lambda t: (-t[0], t[1].render()),
    )
    eig, exp = scored[0]
    value_eth = eig * cfg.eth_per_nat
    reward_eth = min(value_eth, cfg.budget_eth) / cfg.slots
    price_nats = cfg.slots * cfg.price_eth / cfg.eth_per_nat
    rate = eig / price_nats if price_nats > 0 else float("inf")
    why = {
        "experiment": exp.render(),
        "eig": eig,
        "observations": n,
        "price_nats": price_nats,
        "rate": rate,
        "own_best": dec.experiment.render() if own else None,
        "own_eig": own_eig,
        "own_cost": own_cost,
        "own_rate": own_rate,
        "value_eth": value_eth,
        "reward_eth": reward_eth,
        "config": cfg.to_dict(),
    }
    if rate <= own_rate or reward_eth < cfg.price_eth:
        return None
    request = ExperimentRequest(exp, ObjectDescription.of(scene, exp.object), cfg.repetitions)
    terms = {
        "title": f"{exp.render()} x{cfg.repetitions} for: {question.render()}",
        "description": (
            f"A lab asks: {question.render()}. Its rig cannot {exp.skill}. Run `{exp.render()}` "
            f"{cfg.repetitions} times on the object described (label, shape, size) and submit the recording "
            "(joint commands and states, wrist) with its notebook: `loopylab lab fulfil BOUNTY`."
        ),
        "task_spec": request.task_spec(),
        "acceptance": request.acceptance(),
        "slots": cfg.slots,
        "reward_wei": str(int(reward_eth * WEI_PER_ETH)),
    }
    return BountyDraft(request, terms, why)
