"""Learning from its own experiments: DAgger labels and a GRPO-style RL step.

**DAgger.** `DAggerAgent` acts with the policy (or, with probability `beta`, with the expert) and asks
the `eig` expert, at every decision, what it would write in the state the policy reached, bad states
included (an object dropped out of reach, a repeated measurement, a stale belief). Each label becomes a
training record: the notebook up to that decision plus the expert's section, with only that section in
the loss (the policy's own sections are listed in the record's `explore`, which training masks).
Aggregate these records with the expert's shards and retrain; repeat while the gap closes.

**RL, in the manner of nanochat's chat_rl.** On-policy samples: a group of notebooks per world written
by the policy at temperature > 0; reward = 1 for a correct answer minus `cost` per experiment minus
`penalty` per call that failed on the arm; advantage = reward − the group's mean reward (no value
network, no KL term); loss = −Σ advantage × log p(token) over the model-written tokens, divided by the
number of those tokens in the batch. Rollouts run through the lab's `run_world` (the sim bench and the
twin pool); the update runs wherever the model is.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from loopylab.nanochat.data import Encoded, collate
from loopylab.nanochat.tokenizer import MODEL_WRITTEN, Tokenizer, encode_notebook
from loopylab.world import notebook as g

log = logging.getLogger("loopylab.nanochat.onpolicy")


# ---------------------------------------------------------------------------------------------- DAgger


class DAggerAgent:
    """The policy acts; the expert labels every state the policy reaches."""

    name = "nanochat-dagger"
    needs_tables = True  # the expert scores the whole grid

    def __init__(self, seed: int = 0, checkpoint: str | Path | None = None, beta: float = 0.0, **policy_kw):
        import numpy as np

        from loopylab.lab.agents import EIGAgent
        from loopylab.nanochat.agent import NanochatAgent

        self.policy = NanochatAgent(seed=seed, checkpoint=checkpoint, **policy_kw)
        self.expert = EIGAgent(seed=seed)
        self.beta = beta
        self.rng = np.random.default_rng([seed, 0xDA6])
        self.labels: list[tuple[int, g.Section]] = []  # (sections before the decision, the expert's section)
        self.last_decision = None

    def propose(self, view):
        label = self.expert.propose(view)
        self.labels.append((len(view.sections), g.Section(label.kind, label)))
        if self.rng.random() < self.beta:
            self.last_decision = self.expert.last_decision
            return label
        self.last_decision = None
        return self.policy.propose(view)


def dagger_records(notebook_text: str, labels: Sequence[tuple[int, g.Section]], seed: int, kind: str) -> list[dict]:
    """One shard record per labelled decision: prefix + the expert's section, only that section scored."""
    sections = g.parse(notebook_text)
    out = []
    for k, label in labels:
        prefix = sections[:k]
        own = [i for i, s in enumerate(prefix) if s.kind in MODEL_WRITTEN]
        text = g.render([*prefix, label])
        out.append({"seed": seed, "kind": kind, "text": text, "explore": own, "dagger": True})
    return out


_DAGGER: dict = {}


def _dagger_factory(seed: int = 0, **kw) -> DAggerAgent:
    agent = DAggerAgent(seed, checkpoint=_DAGGER.get("checkpoint"), beta=_DAGGER.get("beta", 0.0))
    _DAGGER["agent"] = agent
    return agent


def dagger_world(seed: int, kind: str, checkpoint: str | Path | None = None, beta: float = 0.0) -> list[dict]:
    """Roll the policy out on one world and return the expert's labels as shard records."""
    from loopylab.lab.agents import AGENTS, register_agent
    from loopylab.lab.evaluation import WorldTask, run_world

    if DAggerAgent.name not in AGENTS:
        register_agent(DAggerAgent.name, _dagger_factory)
    _DAGGER.update(checkpoint=checkpoint, beta=beta)
    row = run_world(WorldTask(DAggerAgent.name, kind, seed, record_regret=False))
    agent = _DAGGER.pop("agent", None)
    if row.get("crashed") or not row.get("notebook") or agent is None:
        log.warning("dagger world %s/%d: %s", kind, seed, row.get("exception", "no notebook"))
        return []
    return dagger_records(row["notebook"], agent.labels, seed, kind)


# ---------------------------------------------------------------------------------------------- RL


@dataclass
class RewardConfig:
    cost: float = 0.02  # per experiment (failed calls included: they are experiments)
    penalty: float = 0.1  # per call that failed on the arm


def failed_calls(notebook_text: str) -> int:
    return sum(line.startswith("<|observation_start|>failed") for line in notebook_text.splitlines())


def reward(row: dict, cfg: RewardConfig | None = None) -> float:
    """correct − cost × experiments − penalty × failed calls (a crashed world: the worst, −1)."""
    cfg = cfg or RewardConfig()
    if row.get("crashed") or not row.get("notebook"):
        return -1.0
    fails = failed_calls(row["notebook"])
    return float(bool(row.get("success"))) - cfg.cost * int(row.get("experiments", 0)) - cfg.penalty * fails


def group_advantages(rewards: Sequence[float], groups: Sequence[int]) -> list[float]:
    """reward − the mean reward of its group (same world): nanochat's chat_rl advantage."""
    sums: dict[int, list[float]] = {}
    for r, gid in zip(rewards, groups):
        sums.setdefault(gid, []).append(r)
    means = {gid: sum(v) / len(v) for gid, v in sums.items()}
    return [r - means[gid] for r, gid in zip(rewards, groups)]


def policy_gradient_loss(model, tokenizer: Tokenizer, texts: Sequence[str], advantages: Sequence[float]):
    """−Σ advantage × log p over the model-written tokens of every notebook, / their number."""
    rows = [Encoded(*encode_notebook(tokenizer, t)) for t in texts]
    device = next(model.parameters()).device
    x, y, m = collate(rows, tokenizer.bos_id, device)
    nll = model(x, y, m, reduction="none").view_as(y)  # −log p at scored positions, 0 elsewhere
    adv = torch.tensor(list(advantages), dtype=nll.dtype, device=device)[:, None]
    return (adv * nll).sum() / m.sum().clamp(min=1.0)


def rl_step(model, tokenizer: Tokenizer, opt, rollouts: Sequence[dict], cfg: RewardConfig | None = None) -> dict:
    """One on-policy update from rollouts [{notebook, success, experiments, group}, ...]."""
    rewards = [reward(r, cfg) for r in rollouts]
    advantages = group_advantages(rewards, [r["group"] for r in rollouts])
    usable = [(r["notebook"], a) for r, a in zip(rollouts, advantages) if r.get("notebook") and a != 0.0]
    model.train()
    loss_value = 0.0
    if usable:  # a group whose samples all scored the same teaches nothing
        loss = policy_gradient_loss(model, tokenizer, [t for t, _ in usable], [a for _, a in usable])
        loss.backward()
        opt.step()
        opt.zero_grad()
        loss_value = float(loss.detach())
    model.eval()
    return {"mean_reward": sum(rewards) / max(1, len(rewards)), "loss": loss_value, "used": len(usable)}


def rollout_group(
    seed: int, kind: str, checkpoint: str | Path, group: int, temperature: float = 1.0, budget: int | None = None
) -> list[dict]:
    """`group` notebooks of the policy (sampling) on one world, in this process."""
    from loopylab.lab.agents import AGENTS, register_agent
    from loopylab.lab.evaluation import WorldTask, run_world
    from loopylab.nanochat.agent import NanochatAgent

    rows = []
    for i in range(group):
        name = "nanochat-sample"

        def factory(seed: int = 0, _i=i, **kw):
            return NanochatAgent(seed=seed * 1000 + _i, checkpoint=checkpoint, temperature=temperature)

        AGENTS.pop(name, None)
        register_agent(name, factory)
        rows.append(run_world(WorldTask(name, kind, seed, budget=budget, record_regret=False)))
    return rows


def write_rl_history(out_dir: str | Path, history: Sequence[dict]) -> list[Path]:
    """rl_history.csv (iteration, mean reward, loss) and rl_history.png (reward per iteration)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "rl_history.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["iteration", "mean_reward", "loss", "used"])
        for i, h in enumerate(history, 1):
            w.writerow([i, round(h["mean_reward"], 6), round(h["loss"], 6), h["used"]])
    written = [path]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return written
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(range(1, len(history) + 1), [h["mean_reward"] for h in history], marker="o")
    ax.set_xlabel("RL iteration")
    ax.set_ylabel("mean reward (correct − cost·experiments − penalty·failed)")
    ax.set_title("policy RL: reward per iteration")
    if history and all(math.isfinite(h["mean_reward"]) for h in history):
        fig.tight_layout()
    fig.savefig(out_dir / "rl_history.png", dpi=100)
    plt.close(fig)
    return written + [out_dir / "rl_history.png"]


def rl_loop(
    checkpoint: str | Path,
    worlds: Sequence[tuple[int, str]],
    out_dir: str | Path,
    iterations: int = 1,
    group: int = 4,
    temperature: float = 1.0,
    lr_scale: float = 0.1,
    cfg: RewardConfig | None = None,
    budget: int | None = None,
) -> list[dict]:
    """Iterate: save the current weights, sample `group` notebooks per world with them, update. Writes
    out_dir/iter_NNN/ (the weights each iteration sampled with), rl_history.csv and rl_history.png."""
    from loopylab.nanochat.checkpoint import load_checkpoint, save_checkpoint
    from loopylab.nanochat.optim import MuonAdamW

    model, tokenizer, meta = load_checkpoint(checkpoint)
    opt = MuonAdamW(model, matrix_lr=0.02 * lr_scale, embedding_lr=0.2 * lr_scale, unembedding_lr=0.004 * lr_scale)
    out_dir = Path(out_dir)
    history = []
    for it in range(iterations):
        here = save_checkpoint(out_dir / f"iter_{it:03d}", it, model, tokenizer, meta={"rl_iteration": it})
        rollouts = []
        for gid, (seed, kind) in enumerate(worlds):
            for row in rollout_group(seed, kind, here, group, temperature, budget):
                rollouts.append({**row, "group": gid})
        history.append(rl_step(model, tokenizer, opt, rollouts, cfg))
        log.info("RL iteration %d: mean reward %.3f", it + 1, history[-1]["mean_reward"])
        write_rl_history(out_dir, history)
    save_checkpoint(out_dir / "final", iterations, model, tokenizer, meta={"rl_iterations": iterations})
    return history
