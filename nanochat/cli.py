"""`loopylab policy ...`: make training data, train, sample and evaluate the nanochat policy."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from loopylab.lab.outputs import RUNS, check_output
from loopylab.nanochat.data import SHIPPED_DATA, SHIPPED_DIR

log = logging.getLogger("loopylab.nanochat.cli")

policy = typer.Typer(
    help="The nanochat policy: a small GPT that writes hypotheses, experiments and conclusions "
    "into the lab notebook. Make data with the eig expert, train, sample, evaluate.",
    no_args_is_help=True,
)


@policy.command("data")
def data_cmd(
    seeds: str = typer.Option(
        "0:400",
        "--seeds",
        help="World seeds, e.g. 0:400 or 0:100,500:600. Seeds ending in 9 are held out for validation.",
    ),
    out: Path = typer.Option(
        RUNS / "data",
        "--out",
        help="Folder for the train_/val_ JSONL shards (never the shipped data inside the package).",
    ),
    workers: int = typer.Option(0, "--workers", help="Worker processes (0: one per CPU core)."),
    noise: float = typer.Option(
        0.15,
        "--noise",
        help="Probability that the expert's experiment is replaced by a random candidate (exploration).",
    ),
    kinds: str = typer.Option("all", "--kinds", help="Question kinds, comma-separated, or 'all'."),
):
    """Run the lab's eig expert over seeded sim worlds and write its notebooks as training shards."""
    from loopylab.lab.evaluation import parse_kinds, parse_seeds
    from loopylab.nanochat.data import generate

    check_output(out)
    summary = generate(
        parse_seeds(seeds),
        out,
        workers=workers or None,
        noise=noise,
        kinds=None if kinds == "all" else parse_kinds(kinds),
    )
    typer.echo(
        f"wrote {summary['train']} train and {summary['val']} val notebooks to {out} "
        f"({summary['failed']} worlds failed; expert success {summary['success_rate']:.0%}); "
        f"train on them with: loopylab policy train --data {out}"
    )


@policy.command("train")
def train_cmd(
    preset_name: str = typer.Option(
        "tiny", "--preset", help="tiny (CPU, minutes), small (CPU, the shipped model) or gpu (CUDA, bf16, larger)."
    ),
    steps: int = typer.Option(None, "--steps", help="Override the preset's number of steps."),
    data: Path = typer.Option(SHIPPED_DATA, "--data", help="Folder with train_/val_ shards from `policy data`."),
    out: Path = typer.Option(
        None, "--out", help="Checkpoint folder, with history.csv and history.png (default runs/policy/<preset>)."
    ),
    device: str = typer.Option(None, "--device", help="Override the preset's device (cpu, cuda, cuda:1)."),
    depth: int = typer.Option(None, "--depth", help="Override the preset's depth."),
    batch_size: int = typer.Option(None, "--batch-size", help="Notebooks per optimizer step (all processes)."),
    grad_accum: int = typer.Option(
        None, "--grad-accum", help="Micro-batches per step (the same gradient as one batch, in less memory)."
    ),
    compile_model: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the model."),
    max_notebooks: int = typer.Option(None, "--max-notebooks", help="Use at most this many training notebooks."),
    save_dtype: str = typer.Option(None, "--save-dtype", help="float32 (with optimizer state) or bfloat16 (smaller)."),
    tokenizer_dir: Path = typer.Option(
        None,
        "--tokenizer",
        help="Reuse the tokenizer of this checkpoint folder "
        "(default: train one with rustbpe, or the shipped one if rustbpe is missing).",
    ),
    seed: int = typer.Option(None, "--seed"),
):
    """Train the policy on notebooks; prints loss, tokens/s (and MFU on a GPU) and the final val bpb, and
    writes the loss and val bpb history beside the checkpoint (history.csv, history.png)."""
    import importlib.util

    from loopylab.nanochat.data import read_shards
    from loopylab.nanochat.tokenizer import Tokenizer
    from loopylab.nanochat.train import preset, train

    if tokenizer_dir is None and importlib.util.find_spec("rustbpe") is None:
        tokenizer_dir = SHIPPED_DIR
        typer.echo(f"rustbpe is not installed: reusing the tokenizer in {tokenizer_dir}")
    tokenizer = Tokenizer.load(tokenizer_dir) if tokenizer_dir else None

    cfg = preset(
        preset_name,
        steps=steps,
        device=device,
        depth=depth,
        batch_size=batch_size,
        grad_accum=grad_accum,
        compile=compile_model,
        save_dtype=save_dtype,
        seed=seed,
    )
    train_records = read_shards(data, "train")[:max_notebooks]
    val_records = read_shards(data, "val")
    out = check_output(out or RUNS / "policy" / cfg.preset)
    result = train(cfg, train_records, val_records, out_dir=out, tokenizer=tokenizer)
    mfu = f"{100 * result.mfu:.1f}%" if result.mfu is not None else "n/a (no known GPU peak)"
    typer.echo(
        f"preset {cfg.preset}: {result.params / 1e6:.2f}M params, {cfg.steps} steps, "
        f"final loss {result.losses[-1]:.4f}, val bpb "
        + (f"{result.val_bpb:.4f}" if result.val_bpb is not None else "n/a (no val notebooks)")
    )
    typer.echo(
        f"tokens/s {result.tokens_per_s:,.0f} (real tokens; {100 * result.padding:.0f}% of the computed "
        f"positions were padding)  MFU {mfu}  device {cfg.device}"
    )
    typer.echo(f"checkpoint: {out} (loss and val bpb history: {out / 'history.csv'}, {out / 'history.png'})")


@policy.command("sample")
def sample_cmd(
    seed: int = typer.Option(100009, "--seed", help="World seed."),
    kind: str = typer.Option("friction", "--kind", help="Question kind: friction, mass, restitution, rank, predict."),
    checkpoint: Path = typer.Option(SHIPPED_DIR, "--checkpoint", help="Checkpoint folder."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
):
    """Let the policy investigate one sim world and print its notebook as it is written."""
    from loopylab.lab.evaluation import parse_kinds
    from loopylab.nanochat.agent import run_one

    if parse_kinds(kind) != [kind]:  # an unknown kind is named before the simulator starts
        raise typer.BadParameter(f"one question kind, not {kind!r}", param_hint="--kind")
    result = run_one(seed, kind, checkpoint=checkpoint, temperature=temperature, console=True)
    typer.echo(
        f"success={result['success']} experiments={result['experiments']} "
        f"parse_failures={result['parse_failures']} fallbacks={result['fallbacks']}"
    )


@policy.command("eval")
def eval_cmd(
    checkpoint: Path = typer.Option(SHIPPED_DIR, "--checkpoint", help="Checkpoint folder."),
    data: Path = typer.Option(SHIPPED_DATA, "--data", help="Folder with val_ shards."),
):
    """val bpb of a checkpoint on the held-out notebooks (see benchmarks/policy_eval.py for task success)."""
    from loopylab.nanochat.checkpoint import load_checkpoint
    from loopylab.nanochat.data import encode_all, read_shards
    from loopylab.nanochat.train import evaluate_bpb

    model, tok, meta = load_checkpoint(checkpoint)
    rows = encode_all(tok, read_shards(data, "val"), model.config.sequence_len)
    bpb = evaluate_bpb(model, rows, tok.token_bytes(), tok.bos_id)
    typer.echo(
        f"{checkpoint}: step {meta['step']}, {model.num_params() / 1e6:.2f}M params, "
        f"val bpb {bpb:.4f} on {len(rows)} notebooks"
    )


@policy.command("dagger")
def dagger_cmd(
    seeds: str = typer.Option("0:20", "--seeds", help="Training-split world seeds to roll the policy out on."),
    kinds: str = typer.Option("all", "--kinds", help="Question kinds, comma-separated, or 'all'."),
    checkpoint: Path = typer.Option(SHIPPED_DIR, "--checkpoint", help="The policy to roll out."),
    beta: float = typer.Option(0.0, "--beta", help="Probability that the expert acts instead of the policy."),
    out: Path = typer.Option(RUNS / "dagger", "--out", help="Folder for the labelled shards (journal.jsonl)."),
):
    """Roll the policy out; the eig expert labels every state it reaches; write the labels as shards.
    Retrain on them together with the expert's data: `policy train --data` of a folder holding both."""
    import json

    from loopylab.lab.evaluation import parse_kinds, parse_seeds
    from loopylab.nanochat.data import policy_kinds, write_shards
    from loopylab.nanochat.onpolicy import dagger_world
    from loopylab.world.splits import SplitError, check_split

    check_output(out)
    try:
        check_split(parse_seeds(seeds), "train")  # learning from dev or test worlds would be tuning on them
    except SplitError as e:
        raise typer.BadParameter(str(e), param_hint="--seeds") from None
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for seed in parse_seeds(seeds):
        for kind in policy_kinds() if kinds == "all" else parse_kinds(kinds):
            got = dagger_world(seed, kind, checkpoint, beta)
            records += got
            with open(out / "journal.jsonl", "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in got)
    write_shards(records, out, "train")
    typer.echo(f"{len(records)} expert labels of the policy's states in {out}")


@policy.command("rl")
def rl_cmd(
    seeds: str = typer.Option("0:4", "--seeds", help="Training-split world seeds (one group per world and kind)."),
    kinds: str = typer.Option("all", "--kinds", help="Question kinds, comma-separated, or 'all'."),
    checkpoint: Path = typer.Option(SHIPPED_DIR, "--checkpoint", help="Where RL starts."),
    iterations: int = typer.Option(10, "--iterations"),
    group: int = typer.Option(4, "--group", help="Sampled notebooks per world (the advantage's group)."),
    temperature: float = typer.Option(1.0, "--temperature"),
    out: Path = typer.Option(RUNS / "rl", "--out", help="Folder for iter_NNN/, final/, rl_history.csv/png."),
):
    """On-policy RL from the experiments themselves (nanochat chat_rl style); a real run wants a GPU box."""
    from loopylab.lab.evaluation import parse_kinds, parse_seeds
    from loopylab.nanochat.data import policy_kinds
    from loopylab.nanochat.onpolicy import rl_loop
    from loopylab.world.splits import SplitError, check_split

    check_output(out)
    try:
        check_split(parse_seeds(seeds), "train")
    except SplitError as e:
        raise typer.BadParameter(str(e), param_hint="--seeds") from None
    ks = policy_kinds() if kinds == "all" else parse_kinds(kinds)
    worlds = [(s, k) for s in parse_seeds(seeds) for k in ks]
    history = rl_loop(checkpoint, worlds, out, iterations=iterations, group=group, temperature=temperature)
    typer.echo("mean reward per iteration: " + " ".join(f"{h['mean_reward']:.3f}" for h in history))
    typer.echo(f"checkpoint: {out / 'final'}; curve: {out / 'rl_history.png'}")


@policy.command("export")
def export_cmd(
    nanochat_dir: Path = typer.Option(..., "--nanochat", help="nanochat base folder to write (NANOCHAT_BASE_DIR)."),
    checkpoint: Path = typer.Option(SHIPPED_DIR, "--checkpoint", help="Our checkpoint folder."),
    source: str = typer.Option("sft", "--source", help="base, sft or rl: which <source>_checkpoints folder."),
):
    """Write a checkpoint in nanochat's layout: its model code loads it strictly and computes the same logits."""
    from loopylab.nanochat.checkpoint import CheckpointError
    from loopylab.nanochat.interop import NANOCHAT_REVISION, export_nanochat

    check_output(nanochat_dir)
    try:
        ck_dir, tok_dir = export_nanochat(checkpoint, nanochat_dir, source=source)
    except (CheckpointError, ValueError) as e:
        raise typer.BadParameter(str(e)) from None
    typer.echo(
        f"wrote {ck_dir} and {tok_dir} (nanochat {NANOCHAT_REVISION[:7]}); load with "
        f"NANOCHAT_BASE_DIR={nanochat_dir} and nanochat.checkpoint_manager.load_model({source!r}, ...)"
    )


@policy.command("import")
def import_cmd(
    nanochat_dir: Path = typer.Option(
        ..., "--nanochat", help="nanochat base folder, or one checkpoint folder (model_*.pt) inside it."
    ),
    out: Path = typer.Option(RUNS / "policy" / "imported", "--out", help="Our checkpoint folder to write."),
    source: str = typer.Option("sft", "--source", help="base, sft or rl (for a base folder)."),
    tag: str = typer.Option(None, "--tag", help="Model tag such as d4 (default: the largest d<N>)."),
    revision: str = typer.Option(
        None, "--revision", help="nanochat revision it was trained with, when the files cannot tell (e.g. d575940)."
    ),
):
    """Read a nanochat checkpoint back; refuses one whose function this GPT would not reproduce."""
    from loopylab.nanochat.checkpoint import CheckpointError
    from loopylab.nanochat.interop import import_nanochat

    check_output(out)
    try:
        path = import_nanochat(nanochat_dir, out, source=source, tag=tag, revision=revision)
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        typer.echo(f"refused: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"imported into {path}; run it with: loopylab policy sample --checkpoint {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(policy, name="policy")


if __name__ == "__main__":  # `python -m loopylab.nanochat.cli train ...` on a machine with only torch (e.g. a GPU box)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname).1s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    policy()
