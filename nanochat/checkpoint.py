"""Checkpoints in nanochat's on-disk layout.

    <dir>/model_<step:06d>.pt    torch state dict (keys as in nanochat: transformer.wte, transformer.h.N..., lm_head)
    <dir>/meta_<step:06d>.json   {"step", "val_bpb", "model_config": {sequence_len, vocab_size, n_layer,
                                  n_head, n_kv_head, n_embd, window_pattern}, "architecture": {rope_base,
                                  qk_scale, logit_softcap, vocab_padded_to, ...}, ...training details}
    <dir>/optim_<step:06d>.pt    optimizer state (optional: the shipped checkpoint leaves it out)
    <dir>/tokenizer/             tokenizer.pkl and token_bytes.pt

Loading rebuilds the model from the meta alone, refuses (in one line) a meta whose knobs this GPT does
not implement (`loopylab.nanochat.arch`), and refuses a tokenizer whose vocabulary differs from the
model's, since every id past the mismatch would mean something else. nanochat's own layout (padded
vocabulary, its extra tensors) goes through `loopylab.nanochat.interop`.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import torch

from loopylab.nanochat.arch import ARCH_KEY, ArchitectureError, architecture, config_from_meta
from loopylab.nanochat.data import SHIPPED_DIR
from loopylab.nanochat.gpt import GPT
from loopylab.nanochat.tokenizer import Tokenizer


class CheckpointError(RuntimeError):
    """A checkpoint folder that is missing, incomplete or inconsistent."""


def save_checkpoint(
    directory: str | Path,
    step: int,
    model: GPT,
    tokenizer: Tokenizer | None = None,
    optimizer=None,
    meta: dict | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write one step's files; `dtype` (e.g. torch.bfloat16) shrinks the saved weights."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k.removeprefix("_orig_mod."): v.detach().cpu() for k, v in model.state_dict().items()}
    if dtype is not None:
        state = {k: v.to(dtype) for k, v in state.items()}
    torch.save(state, directory / f"model_{step:06d}.pt")
    full_meta = {
        "step": step,
        "val_bpb": None,
        **(meta or {}),
        "model_config": model.config.to_dict(),
        ARCH_KEY: architecture(model.config),
    }
    (directory / f"meta_{step:06d}.json").write_text(json.dumps(full_meta, indent=2) + "\n")
    if optimizer is not None:
        torch.save(optimizer.state_dict(), directory / f"optim_{step:06d}.pt")
    if tokenizer is not None:
        tokenizer.save(directory)
    return directory


def last_step(directory: str | Path) -> int:
    steps = [
        int(m.group(1)) for p in Path(directory).glob("model_*.pt") if (m := re.fullmatch(r"model_(\d{6})\.pt", p.name))
    ]
    if not steps:
        raise CheckpointError(f"no model_<step>.pt in {directory}")
    return max(steps)


def load_meta(directory: str | Path, step: int | None = None) -> dict:
    directory = Path(directory)
    step = last_step(directory) if step is None else step
    path = directory / f"meta_{step:06d}.json"
    if not path.exists():
        raise CheckpointError(f"missing {path}")
    return json.loads(path.read_text())


def load_checkpoint(
    directory: str | Path = SHIPPED_DIR,
    step: int | None = None,
    device: str | torch.device = "cpu",
    tokenizer: Tokenizer | None = None,
) -> tuple[GPT, Tokenizer, dict]:
    """Rebuild (model, tokenizer, meta) from a checkpoint folder; the model comes back in eval mode."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint folder {directory} does not exist")
    step = last_step(directory) if step is None else step
    meta = load_meta(directory, step)
    try:
        config, pad = config_from_meta(meta, where=f"{directory}/meta_{step:06d}.json")
    except ArchitectureError as e:
        raise CheckpointError(str(e)) from None
    tokenizer = tokenizer or Tokenizer.load(directory)
    if tokenizer.vocab_size != config.vocab_size:
        raise CheckpointError(
            f"tokenizer vocabulary ({tokenizer.vocab_size} tokens) does not match the model's "
            f"vocab_size {config.vocab_size} in {directory}: the ids would mean different "
            f"tokens; use the tokenizer saved beside this checkpoint"
        )
    with torch.device("meta"):
        model = GPT(config)
    model.to_empty(device=device)
    model.init_weights()  # recreates the rotary tables, which are not saved
    state = torch.load(directory / f"model_{step:06d}.pt", map_location=device, weights_only=True)
    state = {k.removeprefix("_orig_mod."): v.float() for k, v in state.items()}
    if pad > 1:  # padded rows are never looked up (wte) or are cropped from the logits (lm_head)
        for key in ("transformer.wte.weight", "lm_head.weight"):
            if key in state and state[key].shape[0] > config.vocab_size:
                state[key] = state[key][: config.vocab_size]
    want = set(model.state_dict())
    extra, missing = sorted(set(state) - want), sorted(want - set(state))
    if extra or missing:  # one line, not torch's page of keys
        hint = (
            " (nanochat's layout: read it with `loopylab policy import --nanochat`)" if "smear_lambda" in extra else ""
        )
        raise CheckpointError(
            f"model_{step:06d}.pt does not fit its meta's model_config: {len(extra)} unexpected tensor(s) "
            f"{', '.join(extra[:3])}; {len(missing)} missing {', '.join(missing[:3])}{hint}"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        raise CheckpointError(f"model_{step:06d}.pt does not fit its meta's model_config: {first}") from None
    return model.eval(), tokenizer, meta


def load_optimizer_state(directory: str | Path, step: int, device="cpu") -> dict | None:
    path = Path(directory) / f"optim_{step:06d}.pt"
    return torch.load(path, map_location=device, weights_only=False) if path.exists() else None


_LOADED: dict[tuple[str, str], tuple] = {}
_LOCK = threading.Lock()


def load_cached(checkpoint: str | Path = SHIPPED_DIR, device: str = "cpu") -> tuple[GPT, Tokenizer, dict]:
    """load_checkpoint once per process and folder: the lab makes one agent per investigation."""
    key = (str(Path(checkpoint).resolve()), str(device))
    with _LOCK:
        if key not in _LOADED:
            _LOADED[key] = load_checkpoint(checkpoint, device=device)
        return _LOADED[key]
