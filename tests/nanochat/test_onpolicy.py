"""On-policy learning: DAgger records score only the expert's label; the RL step follows nanochat's
chat_rl (group-relative advantage, no value network) and moves probability toward better notebooks;
a bounded smoke run of the loop through the sim."""

from __future__ import annotations

import random

import torch

from loopylab.nanochat.data import Encoded, collate
from loopylab.nanochat.gpt import GPT, GPTConfig
from loopylab.nanochat.onpolicy import (
    RewardConfig,
    dagger_records,
    group_advantages,
    reward,
    rl_loop,
    rl_step,
)
from loopylab.nanochat.optim import MuonAdamW
from loopylab.nanochat.tokenizer import encode_notebook
from loopylab.world import notebook as g
from tests.nanochat.conftest import random_notebook


def test_reward_counts_failed_calls_and_advantages_are_group_relative():
    secs = random_notebook(random.Random(2))
    exps = [i for i, s in enumerate(secs) if s.kind == "experiment"]
    secs[exps[0] + 1] = g.Section("observation", g.Observation.failure("cannot reach position [0.9, 0.1, 0.1]"))
    text = g.render(secs)
    cfg = RewardConfig(cost=0.02, penalty=0.1)
    r = reward({"notebook": text, "success": True, "experiments": len(exps)}, cfg)
    assert abs(r - (1 - 0.02 * len(exps) - 0.1)) < 1e-12
    assert reward({"crashed": True}, cfg) == -1.0
    adv = group_advantages([1.0, 0.0, 0.5, 0.2, 0.2], [0, 0, 1, 1, 1])
    assert adv[:2] == [0.5, -0.5] and abs(sum(adv[2:])) < 1e-12


def test_rl_step_moves_probability_toward_the_better_notebook(tokenizer, notebooks):
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_depth(1, tokenizer.vocab_size, 1024)).init_weights(0)
    opt = MuonAdamW(model, matrix_lr=0.01, embedding_lr=0.05, unembedding_lr=0.004)
    good, bad = notebooks[3], notebooks[4]

    def logp(text):
        ids, mask = encode_notebook(tokenizer, text)
        x, y, m = collate([Encoded(ids, mask)], tokenizer.bos_id)
        with torch.no_grad():
            return -float(model(x, y, m, reduction="sum"))

    before = logp(good) - logp(bad)
    rollouts = [
        {"notebook": good, "success": True, "experiments": 2, "group": 0},
        {"notebook": bad, "success": False, "experiments": 2, "group": 0},
    ]
    for _ in range(5):
        stats = rl_step(model, tokenizer, opt, rollouts)
    assert stats["used"] == 2 and abs(stats["mean_reward"] - (0.5 - 0.04)) < 1e-9
    assert logp(good) - logp(bad) > before + 1.0
    # a group whose samples all scored the same teaches nothing: no update
    same = [dict(r, success=True) for r in rollouts]
    w = model.lm_head.weight.clone()
    assert rl_step(model, tokenizer, opt, same)["used"] == 0 and torch.equal(model.lm_head.weight, w)


def test_dagger_records_score_only_the_experts_label(tokenizer):
    secs = random_notebook(random.Random(7))
    text = g.render(secs)
    first_exp = next(i for i, s in enumerate(secs) if s.kind == "experiment")
    label = g.Section("experiment", g.Experiment("weigh", secs[0].body.objects[0]))
    (rec,) = dagger_records(text, [(first_exp + 2, label)], seed=5, kind="mass")
    lines = rec["text"].splitlines()
    assert lines[-1] == "<|experiment_start|>" + label.body.render() + "<|experiment_end|>"
    assert len(lines) == first_exp + 3 and rec["dagger"] and rec["explore"]
    ids, mask = encode_notebook(tokenizer, rec["text"], set(rec["explore"]))
    scored = tokenizer.decode([t for t, m in zip(ids, mask) if m])
    assert scored == lines[-1]  # the policy's own earlier sections are not trained on


def test_rl_loop_smoke_on_one_sim_world(tmp_path):
    """Bounded: one world, a group of two sampled notebooks, a budget of two experiments, one update.
    (The real run, many worlds and iterations, needs a GPU machine.)"""
    from loopylab.nanochat.checkpoint import SHIPPED_DIR, load_checkpoint

    history = rl_loop(SHIPPED_DIR, [(3, "mass")], tmp_path, iterations=1, group=2, budget=2)
    assert len(history) == 1 and -1.0 <= history[0]["mean_reward"] <= 1.0
    assert (tmp_path / "rl_history.csv").read_text().startswith("iteration,mean_reward")
    assert (tmp_path / "rl_history.png").read_bytes().startswith(b"\x89PNG")
    model, _, meta = load_checkpoint(tmp_path / "final")
    assert meta["rl_iterations"] == 1 and meta["architecture"]["rope_base"] == 100_000


def test_learning_verbs_refuse_worlds_outside_the_train_split(tmp_path):
    from typer.testing import CliRunner

    from loopylab.nanochat.cli import policy

    for verb in ("rl", "dagger"):
        r = CliRunner().invoke(policy, [verb, "--seeds", "2000000:2000002", "--out", str(tmp_path / verb)])
        assert r.exit_code != 0 and "not in the train split" in r.output
