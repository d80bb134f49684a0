"""Checkpoints that carry every knob of their function, and nanochat's own layout.

The expected key names, shapes and meta fields below are written down from karpathy/nanochat at
revision 92d63d4 (nanochat/gpt.py, checkpoint_manager.py, tokenizer.py); no nanochat code is used.
That nanochat's model code loads the export strictly and computes identical logits was checked outside
the project (docs/policy.md, "nanochat checkpoints").
"""

from __future__ import annotations

import json
import pickle

import pytest
import tiktoken
import torch
from typer.testing import CliRunner

from loopylab.nanochat.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from loopylab.nanochat.cli import policy
from loopylab.nanochat.gpt import GPT, GPTConfig
from loopylab.nanochat.interop import export_nanochat, import_nanochat

# nanochat 92d63d4: GPTConfig's fields are exactly these, and its loader calls GPTConfig(**model_config)
NANOCHAT_MODEL_CONFIG = {"sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "window_pattern"}


def nanochat_keys(n_layer: int, n_embd: int, n_head: int, n_kv_head: int, vocab: int) -> dict[str, tuple]:
    """Every tensor nanochat 92d63d4's GPT holds, with its shape (vocab rows padded to 64)."""
    rows = -(-vocab // 64) * 64
    kv = n_kv_head * (n_embd // n_head)
    keys = {
        "transformer.wte.weight": (rows, n_embd),
        "lm_head.weight": (rows, n_embd),
        "resid_lambdas": (n_layer,),
        "x0_lambdas": (n_layer,),
        "smear_gate.weight": (1, 24),
        "smear_lambda": (1,),
        "backout_lambda": (1,),
    }
    for i in range(n_layer):
        p = f"transformer.h.{i}."
        keys |= {
            p + "attn.c_q.weight": (n_embd, n_embd),
            p + "attn.c_k.weight": (kv, n_embd),
            p + "attn.c_v.weight": (kv, n_embd),
            p + "attn.c_proj.weight": (n_embd, n_embd),
            p + "mlp.c_fc.weight": (4 * n_embd, n_embd),
            p + "mlp.c_proj.weight": (n_embd, 4 * n_embd),
        }
        if i % 2 == (n_layer - 1) % 2:  # value embeddings on alternating layers, the last included
            keys[f"value_embeds.{i}.weight"] = (rows, kv)
            keys[p + "attn.ve_gate.weight"] = (n_kv_head, 12)
    return keys


def trained_like(tokenizer, depth=2, seq=64, seed=0, **knobs) -> GPT:
    model = GPT(GPTConfig.from_depth(depth, tokenizer.vocab_size, seq, **knobs)).init_weights(seed)
    with torch.no_grad():  # zero output projections would hide the attention: randomise them
        g = torch.Generator().manual_seed(seed + 1)
        for p in model.parameters():
            if p.ndim == 2 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@pytest.fixture()
def ours(tmp_path, tokenizer):
    model = trained_like(tokenizer)
    save_checkpoint(tmp_path / "ours", 42, model, tokenizer, meta={"val_bpb": 0.5})
    return tmp_path / "ours", model


def test_export_has_nanochat_keys_shapes_meta_and_layout(tmp_path, ours, tokenizer):
    src, model = ours
    ck_dir, tok_dir = export_nanochat(src, tmp_path / "nc")
    assert ck_dir == tmp_path / "nc" / "chatsft_checkpoints" / "d2"
    assert sorted(p.name for p in ck_dir.iterdir()) == ["meta_000042.json", "model_000042.pt"]
    assert sorted(p.name for p in tok_dir.iterdir()) == ["token_bytes.pt", "tokenizer.pkl"]
    state = torch.load(ck_dir / "model_000042.pt", weights_only=True)
    c = model.config
    want = nanochat_keys(c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.vocab_size)
    assert {k: tuple(v.shape) for k, v in state.items()} == want
    meta = json.loads((ck_dir / "meta_000042.json").read_text())
    assert set(meta["model_config"]) == NANOCHAT_MODEL_CONFIG
    assert meta["model_config"]["vocab_size"] == tokenizer.vocab_size == 400  # unpadded; tensors hold 448 rows
    assert meta["step"] == 42 and meta["val_bpb"] == 0.5
    assert meta["architecture"]["rope_base"] == 100_000 and meta["architecture"]["qk_scale"] == 1.2
    # the extras hold the values that do nothing, the padding rows are zero
    assert torch.equal(state["resid_lambdas"], torch.ones(2)) and not state["x0_lambdas"].any()
    for k in ("smear_lambda", "backout_lambda", "value_embeds.1.weight", "transformer.h.1.attn.ve_gate.weight"):
        assert not state[k].any(), k
    assert not state["lm_head.weight"][400:].any() and not state["transformer.wte.weight"][400:].any()
    assert torch.equal(state["lm_head.weight"][:400], model.lm_head.weight)
    # nanochat's reader: pickle.load gives a tiktoken.Encoding with <|bos|>, and the vocab matches the config
    with open(tok_dir / "tokenizer.pkl", "rb") as f:
        enc = pickle.load(f)
    assert isinstance(enc, tiktoken.Encoding) and enc.n_vocab == 400
    assert enc.encode_single_token("<|bos|>") == tokenizer.bos_id
    assert torch.load(tok_dir / "token_bytes.pt").shape == (400,)


def test_import_of_an_export_gives_identical_logits(tmp_path, ours):
    src, model = ours
    export_nanochat(src, tmp_path / "nc")
    for where in (tmp_path / "nc", tmp_path / "nc" / "chatsft_checkpoints" / "d2"):  # base or checkpoint folder
        back = import_nanochat(where, tmp_path / "back")
        loaded, _, meta = load_checkpoint(back)
        x = torch.randint(0, 400, (2, 50))
        with torch.no_grad():
            assert torch.equal(loaded(x), model(x))
        assert meta["architecture"]["vocab_padded_to"] == 1  # stored as ours: the padding rows dropped


def _nanochat_file(tmp_path, tokenizer, edit=None, drop=(), meta_edit=None):
    """A checkpoint as nanochat writes it (no architecture block), optionally edited."""
    src = tmp_path / "src"
    save_checkpoint(src, 5, trained_like(tokenizer), tokenizer)
    export_nanochat(src, tmp_path / "nc")
    ck = tmp_path / "nc" / "chatsft_checkpoints" / "d2"
    meta = json.loads((ck / "meta_000005.json").read_text())
    meta = {k: meta[k] for k in ("step", "val_bpb", "model_config")}
    if meta_edit:
        meta_edit(meta)
    (ck / "meta_000005.json").write_text(json.dumps(meta))
    state = torch.load(ck / "model_000005.pt", weights_only=True)
    if edit:
        edit(state)
    state = {k: v for k, v in state.items() if k not in drop}
    torch.save(state, ck / "model_000005.pt")
    return tmp_path / "nc"


def test_plain_nanochat_checkpoint_of_current_revision_imports(tmp_path, tokenizer):
    back = import_nanochat(_nanochat_file(tmp_path, tokenizer), tmp_path / "back")
    _, _, meta = load_checkpoint(back)
    assert (meta["architecture"]["rope_base"], meta["architecture"]["qk_scale"]) == (100_000, 1.2)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s["backout_lambda"].fill_(0.2), "backout_lambda = \\[0.2\\] is not neutral"),
        (lambda s: s["resid_lambdas"].fill_(1.1), "resid_lambdas"),
        (lambda s: s["value_embeds.1.weight"].normal_(), "value_embeds.1.weight is not zero"),
    ],
)
def test_non_neutral_nanochat_extras_are_refused_in_one_line(tmp_path, tokenizer, edit, match):
    nc = _nanochat_file(tmp_path, tokenizer, edit=edit)
    with pytest.raises(CheckpointError, match=match) as e:
        import_nanochat(nc, tmp_path / "back")
    assert "\n" not in str(e.value) and "refusing" in str(e.value)


def test_old_revision_is_refused_unless_named_then_its_knobs_are_used(tmp_path, tokenizer):
    # a December-2025 file: same tensor names, no smear/backout; its rope base and QK scale differ
    extras = ("smear_gate.weight", "smear_lambda", "backout_lambda", "resid_lambdas", "x0_lambdas")
    nc = _nanochat_file(
        tmp_path, tokenizer, drop=extras + ("value_embeds.1.weight", "transformer.h.1.attn.ve_gate.weight")
    )
    with pytest.raises(CheckpointError, match="before revision a825e63"):
        import_nanochat(nc, tmp_path / "back")
    back = import_nanochat(nc, tmp_path / "back", revision="d575940")
    model, _, meta = load_checkpoint(back)
    assert (model.config.rope_base, model.config.qk_scale) == (10_000, 1.0)
    with pytest.raises(CheckpointError, match="unknown"):
        import_nanochat(nc, tmp_path / "back2", revision="abcdef0")


def test_chat_tokenizer_without_notebook_markers_is_refused(tmp_path, tokenizer):
    nc = _nanochat_file(tmp_path, tokenizer)
    enc = tokenizer.enc
    chat = tiktoken.Encoding(
        name="chat",
        pat_str=enc._pat_str,
        mergeable_ranks=enc._mergeable_ranks,
        special_tokens={"<|bos|>": 391, **{f"<|x{i}|>": 392 + i for i in range(8)}},
    )
    with open(nc / "tokenizer" / "tokenizer.pkl", "wb") as f:
        pickle.dump(chat, f)
    with pytest.raises(CheckpointError, match="lacks the notebook markers"):
        import_nanochat(nc, tmp_path / "back")


def _edit_meta(path, fn):
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda m: m.pop("architecture"), "no 'architecture' block"),
        (lambda m: m["architecture"].update(qk_norm="before_rotary"), "qk_norm='before_rotary' is not implemented"),
        (lambda m: m["architecture"].update(value_embeds=True), "value_embeds=True is not implemented"),
        (lambda m: m["architecture"].update(partial_rotary=0.5), "partial_rotary unknown"),
        (lambda m: m["architecture"].pop("rope_base"), "lacks rope_base"),
        (lambda m: m["model_config"].update(rope_theta=1e4), "rope_theta unknown"),
    ],
)
def test_loader_refuses_knobs_it_does_not_implement(ours, fn, match):
    src, _ = ours
    _edit_meta(src / "meta_000042.json", fn)
    with pytest.raises(CheckpointError, match=match) as e:
        load_checkpoint(src)
    assert "\n" not in str(e.value)


def test_numeric_knobs_are_honoured_not_assumed(ours, tokenizer):
    """A meta saying rope base 10k is computed with 10k: the same tensors give other logits."""
    src, model = ours
    x = torch.randint(0, 400, (1, 40))
    _edit_meta(src / "meta_000042.json", lambda m: m["architecture"].update(rope_base=10_000.0))
    loaded, _, _ = load_checkpoint(src)
    assert loaded.config.rope_base == 10_000
    with torch.no_grad():
        assert not torch.allclose(loaded(x), model(x), atol=1e-3)
    ref = trained_like(tokenizer, rope_base=10_000.0)  # the same tensors, built with 10k
    with torch.no_grad():
        assert torch.equal(loaded(x), ref(x))


def test_shipped_checkpoint_records_its_knobs():
    _, tok, meta = load_checkpoint()
    assert set(meta["model_config"]) == NANOCHAT_MODEL_CONFIG and meta["model_config"]["window_pattern"] == "L"
    assert meta["architecture"]["rope_base"] == 100_000 and meta["architecture"]["qk_scale"] == 1.2


def test_cli_export_then_import(tmp_path, ours):
    src, model = ours
    runner = CliRunner()
    r = runner.invoke(policy, ["export", "--nanochat", str(tmp_path / "nc"), "--checkpoint", str(src)])
    assert r.exit_code == 0, r.output
    assert "chatsft_checkpoints" in r.output
    r = runner.invoke(policy, ["import", "--nanochat", str(tmp_path / "nc"), "--out", str(tmp_path / "back")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(policy, ["import", "--nanochat", str(tmp_path / "missing"), "--out", str(tmp_path / "b2")])
    assert r.exit_code == 1 and "refused:" in r.output


def test_our_loader_names_nanochat_layout_in_one_line(tmp_path, ours):
    src, _ = ours
    ck_dir, _ = export_nanochat(src, tmp_path / "nc")
    (ck_dir / "tokenizer").symlink_to(tmp_path / "nc" / "tokenizer")
    with pytest.raises(CheckpointError, match="policy import --nanochat") as e:
        load_checkpoint(ck_dir)
    assert "\n" not in str(e.value)
