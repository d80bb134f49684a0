import random
import uuid

import pytest
import torch

from loopylab.bus import Node
from loopylab.lab.experiments import candidate_experiments
from loopylab.nanochat.checkpoint import save_checkpoint
from loopylab.nanochat.gpt import GPT, GPTConfig
from loopylab.nanochat.node import SERVICE, run_policy
from loopylab.world import notebook as grammar
from loopylab.world.notebook import Section
from tests.nanochat.conftest import random_question, random_scene


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory, tokenizer):
    folder = tmp_path_factory.mktemp("ckpt")
    model = GPT(GPTConfig.from_depth(1, tokenizer.vocab_size, 128)).init_weights(0)
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    save_checkpoint(folder, 0, model, tokenizer)
    return folder


def test_policy_node_serves_valid_sections(random_checkpoint):
    url = f"inproc://{uuid.uuid4().hex}"
    with Node("policy", url) as server_node, Node("lab", url) as lab:
        run_policy(server_node, checkpoint=str(random_checkpoint))
        rng = random.Random(3)
        scene = random_scene(rng)
        question = random_question(rng, scene)
        text = grammar.render([Section("question", question), Section("scene", scene)])
        reply = lab.call(SERVICE, {"notebook": text}, timeout=30)
        assert reply["ok"] and reply["kind"] == "hypothesis"  # protocol: a hypothesis comes first
        hyp = grammar.parse_body("hypothesis", reply["text"])
        text += grammar.section_text(hyp)
        grid = [e.render() for e in candidate_experiments(scene, question)]
        reply = lab.call(SERVICE, {"notebook": text, "allowed": ["experiment"], "candidates": grid[:3]}, timeout=30)
        assert reply["ok"] and reply["kind"] == "experiment" and reply["text"] in grid[:3]
        assert reply["decision_ms"] > 0
        bad = lab.call(SERVICE, {"notebook": "<|question_start|>what?<|question_end|>\n"}, timeout=30)
        assert not bad["ok"] and "question" in bad["error"]
        assert not lab.call(SERVICE, {"nothing": 1}, timeout=30)["ok"]
