"""Export to and import from karpathy/nanochat's own checkpoint layout (revision 92d63d4, 2026-07-03).

nanochat keeps a base folder (`$NANOCHAT_BASE_DIR`) with the tokenizer beside the checkpoints:

    DIR/tokenizer/tokenizer.pkl            the pickled tiktoken.Encoding
    DIR/tokenizer/token_bytes.pt           bytes per token id
    DIR/<source>_checkpoints/d<depth>/model_<step:06d>.pt   state dict
    DIR/<source>_checkpoints/d<depth>/meta_<step:06d>.json  {"step", "val_bpb", "model_config": {...}}

with <source> base, chatsft or chatrl. Its GPT pads the vocabulary to a multiple of 64 (`wte` and
`lm_head` rows; logits are cropped) and loads strictly the tensors of its newer extras: per-layer
`resid_lambdas` and `x0_lambdas`, `smear_gate`/`smear_lambda`, `backout_lambda`, value embeddings on
alternating layers (`value_embeds.<i>` and `transformer.h.<i>.attn.ve_gate`). The export writes them
with the values that do nothing (resid 1, x0 0, lambdas 0, gates and value embeddings 0), so
nanochat's code computes our function exactly. The import keeps a nanochat checkpoint only when those
extras are neutral and its knobs are known (from our architecture block, from the tensors of revisions
since a825e63, or from `revision`); anything else is refused in one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from loopylab.nanochat.arch import ARCH_KEY, FIXED, ArchitectureError, architecture, config_from_meta, padded
from loopylab.nanochat.checkpoint import CheckpointError, last_step, load_checkpoint, save_checkpoint
from loopylab.nanochat.gpt import GPT
from loopylab.nanochat.tokenizer import Tokenizer

NANOCHAT_REVISION = "92d63d4e8bb4df75c3b71618f31ddde2378b2bcd"  # karpathy/nanochat master, 2026-07-03
PAD_VOCAB_TO = 64
SOURCES = {"base": "base_checkpoints", "sft": "chatsft_checkpoints", "rl": "chatrl_checkpoints"}
VE_GATE_CHANNELS, SMEAR_CHANNELS = 12, 24

# knobs of nanochat revisions, read from its gpt.py at each (the tensor names stay the same across them)
REVISIONS = {
    "92d63d4": {"rope_base": 100_000.0, "qk_scale": 1.2, "logit_softcap": 15.0},  # since a825e63 (2026-03-14)
    "6ed7d1d": {"rope_base": 100_000.0, "qk_scale": 1.15, "logit_softcap": 15.0},  # 2026-03-09
    "aba30cb": {"rope_base": 10_000.0, "qk_scale": 1.0, "logit_softcap": 20.0},  # 2026-03-02 .. 03-08
    "d575940": {"rope_base": 10_000.0, "qk_scale": 1.0, "logit_softcap": 15.0},  # 2025-12-08, before padding
}
# tensors that only revisions since a825e63 (smear and backout) write: their knobs are those of 92d63d4
SINCE_A825E63 = ("smear_gate.weight", "smear_lambda", "backout_lambda")


def has_ve(layer: int, n_layer: int) -> bool:
    """nanochat puts value embeddings on alternating layers, the last one always included."""
    return layer % 2 == (n_layer - 1) % 2


def neutral_extras(n_layer: int, n_embd: int, n_head: int, n_kv_head: int, vocab_rows: int) -> dict:
    """nanochat's extra tensors at the values that leave the function unchanged."""
    kv_dim = n_kv_head * (n_embd // n_head)
    out = {
        "resid_lambdas": torch.ones(n_layer),  # x = 1 * x + 0 * x0
        "x0_lambdas": torch.zeros(n_layer),
        "smear_gate.weight": torch.zeros(1, SMEAR_CHANNELS),
        "smear_lambda": torch.zeros(1),  # gate = 0 * sigmoid(...)
        "backout_lambda": torch.zeros(1),  # x - 0 * x_mid
    }
    for i in range(n_layer):
        if has_ve(i, n_layer):
            out[f"value_embeds.{i}.weight"] = torch.zeros(vocab_rows, kv_dim)  # v + gate * 0
            out[f"transformer.h.{i}.attn.ve_gate.weight"] = torch.zeros(n_kv_head, VE_GATE_CHANNELS)
    return out


def nanochat_state(model: GPT) -> dict[str, torch.Tensor]:
    """Our state dict in nanochat's shapes: vocabulary rows padded with zeros, its extras neutral."""
    c = model.config
    rows = padded(c.vocab_size, PAD_VOCAB_TO)
    state = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
    for key in ("transformer.wte.weight", "lm_head.weight"):
        w = state[key]
        state[key] = torch.cat([w, w.new_zeros(rows - w.shape[0], w.shape[1])])
    state.update(neutral_extras(c.n_layer, c.n_embd, c.n_head, c.n_kv_head, rows))
    return state


def export_nanochat(
    checkpoint: str | Path, out: str | Path, source: str = "sft", step: int | None = None
) -> tuple[Path, Path]:
    """Write `checkpoint` as a nanochat base folder `out`; return (checkpoint folder, tokenizer folder)."""
    if source not in SOURCES:
        raise ValueError(f"source {source!r}: one of {', '.join(SOURCES)}")
    model, tokenizer, meta = load_checkpoint(checkpoint, step=step)
    c = model.config
    step = meta["step"]
    ck_dir = Path(out) / SOURCES[source] / f"d{c.n_layer}"
    ck_dir.mkdir(parents=True, exist_ok=True)
    torch.save(nanochat_state(model), ck_dir / f"model_{step:06d}.pt")
    nano_meta = {
        "step": step,
        "val_bpb": meta.get("val_bpb"),
        "model_config": c.to_dict(),
        ARCH_KEY: architecture(c, vocab_padded_to=PAD_VOCAB_TO),
        "nanochat_revision": NANOCHAT_REVISION,
        "exported_from": str(Path(checkpoint)),
        "train_config": meta.get("train_config"),
    }
    (ck_dir / f"meta_{step:06d}.json").write_text(json.dumps(nano_meta, indent=2) + "\n")
    tok_dir = tokenizer.save(out)
    return ck_dir, tok_dir


def find_nanochat_checkpoint(directory: str | Path, source: str = "sft", tag: str | None = None) -> tuple[Path, Path]:
    """(checkpoint folder, tokenizer folder) from a nanochat base folder or a checkpoint folder inside one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory} does not exist")
    if any(directory.glob("model_*.pt")):
        ck_dir = directory
        candidates = [directory / "tokenizer", directory.parent.parent / "tokenizer"]
    else:
        root = directory / SOURCES.get(source, source)
        if not root.is_dir():
            raise CheckpointError(f"no {root.name} in {directory} (and no model_*.pt there)")
        tags = [p.name for p in root.iterdir() if p.is_dir()]
        if tag is None:  # nanochat's rule: the largest d<N>
            depths = sorted((int(m.group(1)), t) for t in tags if (m := re.match(r"d(\d+)", t)))
            if not depths:
                raise CheckpointError(f"no d<depth> folder in {root}")
            tag = depths[-1][1]
        ck_dir = root / tag
        candidates = [directory / "tokenizer"]
    tok = next((p for p in candidates if (p / "tokenizer.pkl").exists()), None)
    if tok is None:
        raise CheckpointError(f"no tokenizer/tokenizer.pkl near {ck_dir}")
    return ck_dir, tok


def _knobs(meta: dict, state: dict, revision: str | None, where: str) -> tuple[dict, str]:
    """(knobs, where they came from)."""
    if ARCH_KEY in meta:  # one of ours: trust nothing but the block itself
        try:
            config, _ = config_from_meta(meta, where)
        except ArchitectureError as e:
            raise CheckpointError(str(e)) from None
        return config.knobs(), "architecture block"
    if revision is not None:
        key = next((k for k in REVISIONS if revision.startswith(k) or k.startswith(revision[:7])), None)
        if key is None:
            raise CheckpointError(f"nanochat revision {revision!r} unknown (known: {', '.join(REVISIONS)})")
        return REVISIONS[key], f"revision {key} (given)"
    if all(k in state for k in SINCE_A825E63):
        return REVISIONS["92d63d4"], "revision a825e63 or later (smear/backout tensors present)"
    raise CheckpointError(
        f"{where}: a nanochat checkpoint from before revision a825e63 (no smear/backout tensors): its rope base, "
        f"QK scale and softcap cannot be told from the file; pass the revision it was trained with"
    )


def _check_neutral(state: dict, where: str) -> None:
    """Refuse nanochat extras that are not at their neutral values (this GPT has none of them)."""
    checks = {
        "resid_lambdas": lambda t: bool((t == 1).all()),
        "x0_lambdas": lambda t: not t.any(),
        "smear_lambda": lambda t: not t.any(),
        "backout_lambda": lambda t: not t.any(),
    }
    for key, ok in checks.items():
        if key in state and not ok(state[key]):
            vals = ", ".join(f"{v:.3g}" for v in state[key].flatten()[:4].tolist())
            raise CheckpointError(
                f"{where}: {key} = [{vals}] is not neutral; loopylab's GPT has no {key.split('_')[0]}, "
                f"refusing rather than computing a different function"
            )
    for key, t in state.items():
        if key.startswith("value_embeds.") and t.any():
            raise CheckpointError(
                f"{where}: {key} is not zero; loopylab's GPT has no value embeddings, "
                f"refusing rather than computing a different function"
            )


def import_nanochat(
    directory: str | Path,
    out: str | Path,
    source: str = "sft",
    tag: str | None = None,
    step: int | None = None,
    revision: str | None = None,
) -> Path:
    """Read a nanochat checkpoint (base folder or checkpoint folder) and write it as ours in `out`."""
    ck_dir, tok_dir = find_nanochat_checkpoint(directory, source, tag)
    step = last_step(ck_dir) if step is None else step
    where = f"{ck_dir}/meta_{step:06d}.json"
    meta = json.loads((ck_dir / f"meta_{step:06d}.json").read_text())
    state = torch.load(ck_dir / f"model_{step:06d}.pt", map_location="cpu", weights_only=True)
    state = {k.removeprefix("_orig_mod."): v.float() for k, v in state.items()}
    knobs, source_of_knobs = _knobs(meta, state, revision, where)
    _check_neutral(state, where)
    mc = {**meta["model_config"]}
    mc.setdefault("window_pattern", "L")  # nanochat patches old metas the same way
    ours = {"model_config": mc, ARCH_KEY: {**FIXED, **knobs, "vocab_padded_to": PAD_VOCAB_TO}}
    try:
        config, _ = config_from_meta(ours, where)
    except ArchitectureError as e:
        raise CheckpointError(str(e)) from None
    tokenizer = Tokenizer.load(tok_dir.parent)
    missing = tokenizer.missing_markers()
    if missing:
        raise CheckpointError(
            f"{tok_dir}/tokenizer.pkl lacks the notebook markers ({', '.join(missing[:2])}, ...): "
            f"a nanochat chat model cannot write lab notebooks"
        )
    model = GPT(config)
    keep = {k: v for k, v in state.items() if k in model.state_dict()}
    for key in ("transformer.wte.weight", "lm_head.weight"):
        keep[key] = keep[key][: config.vocab_size]
    try:
        model.load_state_dict(keep, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{ck_dir}/model_{step:06d}.pt does not fit its model_config: {e}") from None
    extra = {"val_bpb": meta.get("val_bpb"), "imported_from": str(ck_dir), "knobs_from": source_of_knobs}
    return save_checkpoint(out, step, model, tokenizer, meta=extra)
