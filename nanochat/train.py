"""Training: presets, the loop, val bpb.

    tiny   CPU, depth 2, a few minutes; what the tests use
    small  CPU, depth 4; the shipped checkpoint
    gpu    CUDA, bf16 autocast, depth 8, torch.compile; logs tokens/s and MFU

On many GPUs (or CPU processes, with gloo):

    torchrun --standalone --nproc_per_node=N -m loopylab.nanochat.train --preset gpu [--grad-accum K]

`batch_size` is the number of notebooks per optimizer step over all processes and micro-batches: each
of the N processes takes its slice of the same global batch and runs it in K micro-batches; every
micro-batch's summed loss is divided by the scored tokens of the whole global batch, so the summed
(and DDP-averaged) gradient is that of one big batch. tokens/s and MFU count the real notebook tokens
(no padding) and attention at the real notebook lengths.

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

from loopylab.nanochat import distributed as ddp
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
    grad_accum: int = 1  # micro-batches per optimizer step in each process


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
    tokens_per_s: float = 0.0  # real notebook tokens (padding left out), all processes together
    mfu: float | None = None
    padding: float = 0.0  # fraction of the computed positions that were padding
    ranks_identical: bool = True  # every process ended with bitwise the same weights
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
    info = ddp.current()  # under torchrun each process scores its share; the sums are added up
    rows = rows[info.rank :: info.world]
    for i in range(0, len(rows), batch_size):
        x, y, m = collate(rows[i : i + batch_size], pad_id, device)
        with autocast_for(device):
            loss = model(x, y, m, reduction="none").view_as(y)
        b = token_bytes[y] * (m > 0)
        nats += float((loss * (b > 0)).sum())
        nbytes += int(b.sum())
    nats, nbytes = ddp.all_sum([nats, float(nbytes)], device)
    model.train(was_training)
    return nats / (math.log(2) * nbytes) if nbytes else float("nan")


def accumulate(fwd, micro_batches, n_scored: float, scale: float = 1.0, no_sync=None) -> float:
    """Backward over micro-batches [(x, y, m), ...] with each one's summed loss divided by `n_scored`,
    the scored tokens of the whole global batch, times `scale` (the world size, since DDP averages):
    the gradients add up to those of one big batch. `no_sync` (DDP's) skips the all-reduce on all but
    the last micro-batch. Returns this process's summed loss (for the step's mean loss)."""
    total = 0.0
    for j, (x, y, m) in enumerate(micro_batches):
        last = j == len(micro_batches) - 1
        with no_sync() if (no_sync is not None and not last) else nullcontext():
            with autocast_for(x.device):
                loss_sum = fwd(x, y, m, reduction="sum")
            (loss_sum * (scale / n_scored)).backward()
        total += float(loss_sum.detach())
    return total


def shares(batch: list[int], rank: int, world: int, grad_accum: int) -> list[list[int]]:
    """This process's micro-batches of a global batch of row indices: the batch cut into world x
    grad_accum contiguous parts (similar lengths stay together) whose sizes differ by at most one."""
    parts = world * grad_accum
    if len(batch) < parts:
        raise ValueError(
            f"a batch of {len(batch)} notebooks cannot feed {world} processes x {grad_accum} micro-batches"
        )
    cuts = [len(batch) * i // parts for i in range(parts + 1)]
    return [batch[cuts[j] : cuts[j + 1]] for j in range(rank * grad_accum, (rank + 1) * grad_accum)]


def computed_positions(rows, batch: list[int], world: int, grad_accum: int, pad_to: int = 1) -> int:
    """Positions all processes compute for a global batch: each micro-batch is padded to its longest row."""
    total = 0
    for rank in range(world):
        for b in shares(batch, rank, world, grad_accum):
            longest = max(len(rows[i].ids) - 1 for i in b)
            total += len(b) * -(-longest // pad_to) * pad_to
    return total


def _setup(cfg: TrainConfig, train_texts, tokenizer: Tokenizer | None):
    """(dist info, device, tokenizer): joins torchrun's process group; rank 0 trains the tokenizer."""
    info, device = ddp.setup(torch.device(cfg.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("preset asks for CUDA but torch sees no GPU (use --preset tiny|small or --device cpu)")
    if cfg.batch_size < info.world * cfg.grad_accum:
        raise ValueError(f"batch_size {cfg.batch_size} < {info.world} processes x {cfg.grad_accum} micro-batches")
    torch.manual_seed(cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if tokenizer is None:
        if info.main:
            t0 = time.time()
            texts = [t["text"] if isinstance(t, dict) else t for t in train_texts]
            tokenizer = Tokenizer.train(texts, cfg.vocab_size, allow_smaller=True)
            log.info(
                "tokenizer: %d tokens trained on %d notebooks in %.1fs",
                tokenizer.vocab_size,
                len(texts),
                time.time() - t0,
            )
        enc = ddp.broadcast_object(tokenizer.enc if tokenizer else None)
        tokenizer = tokenizer or Tokenizer(enc)
    return info, device, tokenizer


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
    one is trained on the training notebooks. Under torchrun every process runs this; rank 0 writes."""
    info, device, tokenizer = _setup(cfg, train_texts, tokenizer)
    pad_id = tokenizer.bos_id  # padding is masked; any id works
    train_rows = encode_all(tokenizer, train_texts, cfg.sequence_len)
    val_rows = encode_all(tokenizer, val_texts, cfg.sequence_len)
    token_bytes = tokenizer.token_bytes()
    config = GPTConfig.from_depth(cfg.depth, tokenizer.vocab_size, cfg.sequence_len)
    model = GPT(config).to(device).init_weights(cfg.seed)
    opt = MuonAdamW(model, matrix_lr=cfg.matrix_lr, embedding_lr=cfg.embedding_lr, unembedding_lr=cfg.unembedding_lr)
    schedule = Schedule(cfg.steps, warmup=min(cfg.warmup, max(1, cfg.steps // 5)), warmdown=cfg.warmdown)
    wrapped = model
    if info.enabled:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    fwd = torch.compile(wrapped, dynamic=True) if cfg.compile else wrapped
    batches = NotebookBatches(train_rows, cfg.batch_size, pad_id, seed=cfg.seed).index_batches()
    peak = peak_flops(device)
    n_params = model.num_params()
    log.info(
        "model: depth %d, width %d, %d heads, %.2fM parameters, vocab %d, %s x %d processes, %d micro-batches; "
        "%d train / %d val notebooks",
        *(config.n_layer, config.n_embd, config.n_head, n_params / 1e6, config.vocab_size, device),
        *(info.world, cfg.grad_accum, len(train_rows), len(val_rows)),
    )

    result = TrainResult(out_dir=Path(out_dir) if out_dir else None, step=cfg.steps, params=n_params)
    timed = {"tokens": 0, "flops": 0.0, "s": 0.0, "real": 0, "computed": 0}
    bar = _progress(progress and info.main)
    task = bar.add_task("training", total=cfg.steps, info="") if bar else None
    model.train()
    with bar or nullcontext():
        for step in range(cfg.steps):
            t0 = time.time()
            batch = next(batches)
            rows = [train_rows[i] for i in batch]
            n_scored = float(sum(sum(r.mask[1:]) for r in rows))
            pad_to = 128 if cfg.compile else 1
            mine = shares(batch, info.rank, info.world, cfg.grad_accum)
            micro = [collate([train_rows[i] for i in b], pad_id, device, pad_to) for b in mine]
            local = accumulate(fwd, micro, max(n_scored, 1.0), info.world, getattr(wrapped, "no_sync", None))
            opt.set_lr_multiplier(schedule(step))
            opt.step()
            opt.zero_grad()
            (loss_sum,) = ddp.all_sum([local], device)  # synchronises, so the timing below is real
            loss_value = loss_sum / max(n_scored, 1.0)
            dt = time.time() - t0
            lengths = [len(r.ids) - 1 for r in rows]
            timed["real"] += sum(lengths)
            timed["computed"] += computed_positions(train_rows, batch, info.world, cfg.grad_accum, pad_to)
            if step >= min(5, cfg.steps // 2):  # leave out warmup steps (compilation, allocator)
                timed["tokens"] += sum(lengths)
                timed["flops"] += model.train_flops(lengths)
                timed["s"] += dt
            result.losses.append(loss_value)
            if on_step:
                on_step(step, loss_value)
            info_text = _speed(timed, peak, info.world, loss_value)
            if bar:
                bar.update(task, advance=1, info=info_text)
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0 and step + 1 < cfg.steps and val_rows:
                bpb = evaluate_bpb(model, val_rows, token_bytes, pad_id)
                result.val_history.append((step + 1, bpb))
                if info.main:
                    log.info("step %d/%d: %s, val bpb %.4f", step + 1, cfg.steps, info_text, bpb)
    result.tokens_per_s = timed["tokens"] / timed["s"] if timed["s"] else 0.0
    result.mfu = timed["flops"] / timed["s"] / (peak * info.world) if peak and timed["s"] else None
    result.padding = 1 - timed["real"] / timed["computed"] if timed["computed"] else 0.0
    result.val_bpb = evaluate_bpb(model, val_rows, token_bytes, pad_id) if val_rows else None
    if result.val_bpb is not None:
        result.val_history.append((cfg.steps, result.val_bpb))
    result.ranks_identical = ddp.ranks_identical(model)
    if not result.ranks_identical:
        log.error("rank %d: the processes ended with different weights", info.rank)
    if info.main:
        _finish(cfg, result, model, tokenizer, opt, out_dir, info, len(train_rows), len(val_rows))
    result.model, result.tokenizer = model, tokenizer
    return result


def _speed(timed: dict, peak: float | None, world: int, loss: float) -> str:
    tok_s = timed["tokens"] / timed["s"] if timed["s"] else 0.0
    text = f"loss {loss:.3f}  {tok_s:,.0f} tok/s"
    if peak and timed["s"]:
        text += f"  MFU {100 * timed['flops'] / timed['s'] / (peak * world):.1f}%"
    return text


def _finish(cfg, result: TrainResult, model, tokenizer, opt, out_dir, info, n_train: int, n_val: int) -> None:
    """Log the run and, on rank 0, write the checkpoint and its history."""
    mfu_text = f", MFU {100 * result.mfu:.1f}%" if result.mfu is not None else ""
    log.info(
        "done: %d steps, final loss %.4f, val bpb %s, %.0f tokens/s (real tokens; %.0f%% padding computed)%s",
        cfg.steps,
        result.losses[-1],
        f"{result.val_bpb:.4f}" if result.val_bpb is not None else "n/a",
        result.tokens_per_s,
        100 * result.padding,
        mfu_text,
    )
    if out_dir is None:
        return
    meta = {
        "val_bpb": result.val_bpb,
        "train_config": asdict(cfg),
        "final_loss": result.losses[-1],
        "tokens_per_s": result.tokens_per_s,
        "mfu": result.mfu,
        "padding": result.padding,
        "notebooks": {"train": n_train, "val": n_val},
        "processes": {
            "world_size": info.world,
            "grad_accum": cfg.grad_accum,
            "ranks_identical": result.ranks_identical,
        },
    }
    dtype = getattr(torch, cfg.save_dtype)
    save_checkpoint(out_dir, cfg.steps, model, tokenizer, opt if cfg.save_dtype == "float32" else None, meta, dtype)
    n_params = result.params
    title = f"policy training ({cfg.preset} preset, {n_params / 1e6:.2f}M parameters)"
    write_history(out_dir, result.losses, result.val_history, title=title)
    log.info("checkpoint written to %s (history.csv and history.png beside it)", out_dir)


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


def main(argv: list[str] | None = None) -> TrainResult:
    """`python -m loopylab.nanochat.train` / `torchrun --nproc_per_node=N -m loopylab.nanochat.train`:
    the trainer with only torch and tiktoken installed (argparse, no typer)."""
    import argparse
    import importlib.util

    from loopylab.lab.outputs import RUNS, check_output
    from loopylab.nanochat.checkpoint import SHIPPED_DIR
    from loopylab.nanochat.data import SHIPPED_DATA, read_shards

    ap = argparse.ArgumentParser(prog="loopylab.nanochat.train", description="Train the nanochat policy.")
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--data", type=Path, default=SHIPPED_DATA, help="folder with train_/val_ shards")
    ap.add_argument("--out", type=Path, default=None, help="checkpoint folder (default runs/policy/<preset>)")
    ap.add_argument("--tokenizer", type=Path, default=None, help="reuse the tokenizer of this checkpoint folder")
    ap.add_argument("--max-notebooks", type=int, default=None)
    typed = {"steps": int, "depth": int, "batch-size": int, "grad-accum": int, "device": str, "seed": int}
    for name, typ in {**typed, "eval-every": int, "save-dtype": str}.items():
        ap.add_argument(f"--{name}", type=typ, default=None)
    ap.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname).1s %(name)s: %(message)s")
    info = ddp.env_info()
    if not info.main:
        logging.getLogger().setLevel(logging.WARNING)  # one process reports
    names = ("steps", "depth", "batch_size", "grad_accum", "device", "seed", "eval_every", "save_dtype", "compile")
    overrides = {k: getattr(args, k) for k in names}
    cfg = preset(args.preset, **overrides)
    tok_dir = args.tokenizer
    if tok_dir is None and importlib.util.find_spec("rustbpe") is None:
        tok_dir = SHIPPED_DIR  # a torch-only box: the shipped tokenizer
    out = check_output(args.out or RUNS / "policy" / cfg.preset)
    try:
        return train(
            cfg,
            read_shards(args.data, "train")[: args.max_notebooks],
            read_shards(args.data, "val"),
            out_dir=out,
            tokenizer=Tokenizer.load(tok_dir) if tok_dir else None,
            progress=not args.no_progress,
        )
    finally:
        ddp.teardown(info)


if __name__ == "__main__":
    main()
