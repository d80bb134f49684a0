"""Training: presets, the loop, val bpb.

    tiny   CPU, depth 2, a few minutes; what the tests use
    small  CPU, depth 4; the shipped checkpoint
    gpu    CUDA, bf16 autocast, depth 8, torch.compile; logs tokens/s and MFU

The loss covers only model-written tokens (hypotheses, experiments, conclusions); the question, the
scene and the observations and beliefs the lab forces into the context are masked. val bpb follows
nanochat: summed nats over summed bytes of the scored tokens (special tokens carry no bytes), in bits.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from loopylab.nanochat.checkpoint import save_checkpoint
from loopylab.nanochat.data import NotebookBatches, collate, encode_all
from loopylab.nanochat.gpt import GPT, GPTConfig
from loopylab.nanochat.history import write_history
from loopylab.nanochat.optim import MuonAdamW, Schedule
from loopylab.nanochat.tokenizer import Tokenizer

log = logging.getLogger("loopylab.nanochat.train")

# bf16 dense peak of the accelerators we know, for MFU
PEAK_FLOPS = {
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L4": 121e12,
    "A10": 125e12,
    "4090": 165e12,
    "3090": 71e12,
}


@dataclass
class TrainConfig:
    preset: str = "tiny"
    depth: int = 2
    vocab_size: int = 512
    sequence_len: int = 2048
    batch_size: int = 8
    steps: int = 300
    warmup: int = 20
    warmdown: float = 0.5
    matrix_lr: float = 0.02
    embedding_lr: float = 0.2
    unembedding_lr: float = 0.004
    eval_every: int = 100
    device: str = "cpu"
    compile: bool = False
    seed: int = 0
    save_dtype: str = "float32"  # "bfloat16" halves the checkpoint on disk


PRESETS = {
    "tiny": TrainConfig(),
    # the shipped checkpoint: 350 steps on its 539 training notebooks (val bpb 0.082); longer training
    # overfits small corpora (300 notebooks: 0.108 at 250 steps, 0.161 at 400)
    "small": TrainConfig(
        preset="small", depth=4, vocab_size=768, batch_size=16, steps=350, eval_every=0, save_dtype="bfloat16"
    ),
    "gpu": TrainConfig(
        preset="gpu", depth=8, vocab_size=1024, batch_size=128, steps=2000, eval_every=500, device="cuda", compile=True
    ),
}


def preset(name: str, **overrides) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (have {', '.join(PRESETS)})")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


@dataclass
class TrainResult:
    out_dir: Path | None
    step: int
    losses: list[float] = field(default_factory=list)
    val_bpb: float | None = None
    val_history: list[tuple[int, float]] = field(default_factory=list)  # (step, val bpb) at each eval
    tokens_per_s: float = 0.0
    mfu: float | None = None
    params: int = 0
    model: GPT | None = None
    tokenizer: Tokenizer | None = None


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def autocast_for(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


@torch.no_grad()
def evaluate_bpb(model: GPT, rows, token_bytes: torch.Tensor, pad_id: int, batch_size: int = 16) -> float:
    """Bits per byte of the model-written tokens of `rows` (special tokens are scored but carry 0 bytes,
    so as in nanochat they are left out of both sums)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    token_bytes = token_bytes.to(device)
    nats, nbytes = 0.0, 0
    for i in range(0, len(rows), batch_size):
        x, y, m = collate(rows[i : i + batch_size], pad_id, device)
        with autocast_for(device):
            loss = model(x, y, m, reduction="none").view_as(y)
        b = token_bytes[y] * (m > 0)
        nats += float((loss * (b > 0)).sum())
        nbytes += int(b.sum())
    model.train(was_training)
    return nats / (math.log(2) * nbytes) if nbytes else float("nan")


def train(
    cfg: TrainConfig,
    train_texts: Sequence[str | dict],
    val_texts: Sequence[str | dict],
    out_dir: str | Path | None = None,
    tokenizer: Tokenizer | None = None,
    progress: bool = True,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a policy from notebooks (texts or shard records); save a checkpoint in `out_dir` (when given)
    at the end, with the loss and val bpb history beside it (history.csv, history.png). Without a tokenizer
    one is trained on the training notebooks."""
    device = torch.device(cfg.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("preset asks for CUDA but torch sees no GPU (use --preset tiny|small or --device cpu)")
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if tokenizer is None:
        t0 = time.time()
        tokenizer = Tokenizer.train(
            [t["text"] if isinstance(t, dict) else t for t in train_texts], cfg.vocab_size, allow_smaller=True
        )
        log.info(
            "tokenizer: %d tokens trained on %d notebooks in %.1fs",
            tokenizer.vocab_size,
            len(train_texts),
            time.time() - t0,
        )
    pad_id = tokenizer.bos_id  # padding is masked; any id works
    train_rows = encode_all(tokenizer, train_texts, cfg.sequence_len)
    val_rows = encode_all(tokenizer, val_texts, cfg.sequence_len)
    token_bytes = tokenizer.token_bytes()

    config = GPTConfig.from_depth(cfg.depth, tokenizer.vocab_size, cfg.sequence_len)
    model = GPT(config).to(device).init_weights(cfg.seed)
    opt = MuonAdamW(model, matrix_lr=cfg.matrix_lr, embedding_lr=cfg.embedding_lr, unembedding_lr=cfg.unembedding_lr)
    schedule = Schedule(cfg.steps, warmup=min(cfg.warmup, max(1, cfg.steps // 5)), warmdown=cfg.warmdown)
    fwd = torch.compile(model, dynamic=True) if cfg.compile else model
    batches = iter(
        NotebookBatches(
            train_rows, cfg.batch_size, pad_id, seed=cfg.seed, device=device, pad_to=128 if cfg.compile else 1
        )
    )
    flops_per_token = model.flops_per_token()
    peak = peak_flops(device)
    n_params = model.num_params()
    log.info(
        "model: depth %d, width %d, %d heads, %.2fM parameters, vocab %d, %s; %d train / %d val notebooks",
        config.n_layer,
        config.n_embd,
        config.n_head,
        n_params / 1e6,
        config.vocab_size,
        device,
        len(train_rows),
        len(val_rows),
    )

    result = TrainResult(out_dir=Path(out_dir) if out_dir else None, step=cfg.steps, params=n_params)
    timed_tokens, timed_s = 0, 0.0
    bar = _progress(progress)
    task = bar.add_task("training", total=cfg.steps, info="") if bar else None
    model.train()
    with bar or nullcontext():
        for step in range(cfg.steps):
            t0 = time.time()
            x, y, m = next(batches)
            with autocast_for(device):
                loss = fwd(x, y, m)
            loss.backward()
            opt.set_lr_multiplier(schedule(step))
            opt.step()
            opt.zero_grad()
            loss_value = float(loss.detach())  # synchronises, so the timing below is real
            dt = time.time() - t0
            if step >= min(5, cfg.steps // 2):  # leave out warmup steps (compilation, allocator)
                timed_tokens += x.numel()
                timed_s += dt
            result.losses.append(loss_value)
            if on_step:
                on_step(step, loss_value)
            tok_s = timed_tokens / timed_s if timed_s else 0.0
            info = f"loss {loss_value:.3f}  {tok_s:,.0f} tok/s"
            if peak:
                info += f"  MFU {100 * flops_per_token * tok_s / peak:.1f}%"
            if bar:
                bar.update(task, advance=1, info=info)
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps and val_rows:
                bpb = evaluate_bpb(model, val_rows, token_bytes, pad_id)
                result.val_history.append((step + 1, bpb))
                log.info("step %d/%d: %s, val bpb %.4f", step + 1, cfg.steps, info, bpb)
    result.tokens_per_s = timed_tokens / timed_s if timed_s else 0.0
    result.mfu = flops_per_token * result.tokens_per_s / peak if peak else None
    result.val_bpb = evaluate_bpb(model, val_rows, token_bytes, pad_id) if val_rows else None
    if result.val_bpb is not None:
        result.val_history.append((cfg.steps, result.val_bpb))
    mfu_text = f", MFU {100 * result.mfu:.1f}%" if result.mfu is not None else ""
    log.info(
        "done: %d steps, final loss %.4f, val bpb %s, %.0f tokens/s%s",
        cfg.steps,
        result.losses[-1],
        f"{result.val_bpb:.4f}" if result.val_bpb is not None else "n/a",
        result.tokens_per_s,
        mfu_text,
    )
    if out_dir is not None:
        meta = {
            "val_bpb": result.val_bpb,
            "train_config": asdict(cfg),
            "final_loss": result.losses[-1],
            "tokens_per_s": result.tokens_per_s,
            "mfu": result.mfu,
            "notebooks": {"train": len(train_rows), "val": len(val_rows)},
        }
        save_checkpoint(
            out_dir,
            cfg.steps,
            model,
            tokenizer,
            optimizer=opt if cfg.save_dtype == "float32" else None,
            meta=meta,
            dtype=getattr(torch, cfg.save_dtype),
        )
        write_history(
            out_dir,
            result.losses,
            result.val_history,
            title=f"policy training ({cfg.preset} preset, {n_params / 1e6:.2f}M parameters)",
        )
        log.info("checkpoint written to %s (history.csv and history.png beside it)", out_dir)
    result.model, result.tokenizer = model, tokenizer
    return result


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
