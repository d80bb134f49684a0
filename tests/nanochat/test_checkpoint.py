import json

import pytest
import torch

from loopylab.nanochat.checkpoint import (
    CheckpointError,
    last_step,
    load_checkpoint,
    load_optimizer_state,
    save_checkpoint,
)
from loopylab.nanochat.gpt import GPT, GPTConfig
from loopylab.nanochat.optim import MuonAdamW
from loopylab.nanochat.tokenizer import Tokenizer


def test_round_trip_gives_identical_logits(tmp_path, tokenizer):
    model = GPT(GPTConfig.from_depth(2, tokenizer.vocab_size, 64)).init_weights(1)
    opt = MuonAdamW(model)
    x = torch.randint(0, tokenizer.vocab_size, (2, 30))
    model(x[:, :-1], x[:, 1:]).backward()
    opt.step()  # non-trivial weights and optimizer state
    save_checkpoint(tmp_path, 7, model, tokenizer, opt, meta={"val_bpb": 1.25})
    save_checkpoint(tmp_path, 12, model, tokenizer, opt, meta={"val_bpb": 1.0})
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [
        "meta_000007.json",
        "meta_000012.json",
        "model_000007.pt",
        "model_000012.pt",
        "optim_000007.pt",
        "optim_000012.pt",
        "tokenizer",
    ]
    meta = json.loads((tmp_path / "meta_000012.json").read_text())
    assert meta["step"] == 12 and meta["val_bpb"] == 1.0
    assert set(meta["model_config"]) == {
        "sequence_len",
        "vocab_size",
        "n_layer",
        "n_head",
        "n_kv_head",
        "n_embd",
        "window_pattern",
    }
    assert meta["architecture"]["rope_base"] == 100_000 and meta["architecture"]["logit_softcap"] == 15
    assert last_step(tmp_path) == 12
    loaded, tok, meta2 = load_checkpoint(tmp_path)
    assert meta2 == meta and tok.vocab_size == tokenizer.vocab_size
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    state = load_optimizer_state(tmp_path, 12)
    MuonAdamW(loaded).load_state_dict(state)


def test_compiled_prefix_is_stripped_and_bf16_upcast(tmp_path, tokenizer):
    model = GPT(GPTConfig.from_depth(1, tokenizer.vocab_size, 32)).init_weights(2)
    save_checkpoint(tmp_path, 0, model, tokenizer, dtype=torch.bfloat16)
    sd = torch.load(tmp_path / "model_000000.pt")
    torch.save({f"_orig_mod.{k}": v for k, v in sd.items()}, tmp_path / "model_000000.pt")
    loaded, _, _ = load_checkpoint(tmp_path)
    assert loaded.lm_head.weight.dtype == torch.float32
    assert torch.equal(loaded.transformer.wte.weight, model.transformer.wte.weight.bfloat16().float())


def test_mismatched_vocabulary_is_refused(tmp_path, tokenizer, notebooks):
    model = GPT(GPTConfig.from_depth(1, tokenizer.vocab_size, 32)).init_weights(0)
    save_checkpoint(tmp_path, 3, model, tokenizer)
    other = Tokenizer.train(notebooks, vocab_size=350)
    with pytest.raises(CheckpointError, match="does not match the model's vocab_size 400"):
        load_checkpoint(tmp_path, tokenizer=other)
    other.save(tmp_path)  # a foreign tokenizer beside the checkpoint is refused the same way
    with pytest.raises(CheckpointError, match="350 tokens"):
        load_checkpoint(tmp_path)


def test_missing_or_inconsistent_checkpoint_is_a_clear_error(tmp_path, tokenizer):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none")
    with pytest.raises(CheckpointError, match="no model_"):
        load_checkpoint(tmp_path)
    model = GPT(GPTConfig.from_depth(1, tokenizer.vocab_size, 32)).init_weights(0)
    save_checkpoint(tmp_path, 1, model, tokenizer)
    meta = json.loads((tmp_path / "meta_000001.json").read_text())
    meta["model_config"]["n_layer"] = 2
    (tmp_path / "meta_000001.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(tmp_path)
