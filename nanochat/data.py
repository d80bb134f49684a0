"""Training data: notebooks written by the lab's `eig` expert, stored as JSONL shards, and batches.

`generate` runs the expert (with some exploration noise, so the policy also sees recoveries from
imperfect choices) over seeded sim worlds in a process pool and writes
`<out>/{train,val}_<n:05d>.jsonl.gz`, one notebook per line with its seed, question kind and grade.
Seeds are split by value: every seed with `seed % 10 == 9` is held out for validation.

`NotebookBatches` tokenizes notebooks once and yields (inputs, targets, mask) rows, one notebook per
row (padded, never packed across notebooks, so the model always sees a notebook from its start as
it will at inference). The mask keeps only model-written target tokens.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from loopylab.nanochat.tokenizer import Tokenizer, encode_notebook

if TYPE_CHECKING:  # data generation runs without torch (a CPU box making expert notebooks)
    import torch

log = logging.getLogger("loopylab.nanochat.data")

SHARD_SIZE = 2000  # notebooks per shard file
SHIPPED_DATA = Path(__file__).parent / "data"  # the small shard set the shipped checkpoint was trained on
# the shipped checkpoint: named here, where torch is not imported, so `loopylab --help` and every verb start fast
SHIPPED_DIR = Path(__file__).parent / "checkpoints"


def policy_kinds() -> tuple[str, ...]:
    """The question kinds the policy's data and grammar cover: every kind in the registry (lab/kinds.py), so a
    kind registered anywhere is in the next data set without a line here."""
    from loopylab.lab import kinds

    return kinds.names()


def is_val_seed(seed: int) -> bool:
    return seed % 10 == 9


# ---------------------------------------------------------------------------------------------- shards


def write_shards(records: Sequence[dict], out_dir: str | Path, split: str, shard_size: int = SHARD_SIZE) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in list(out_dir.glob(f"{split}_*.jsonl")) + list(out_dir.glob(f"{split}_*.jsonl.gz")):
        old.unlink()
    paths = []
    for i in range(0, max(len(records), 1), shard_size):
        path = out_dir / f"{split}_{i // shard_size:05d}.jsonl.gz"
        with gzip.open(path, "wt") as f:
            for r in records[i : i + shard_size]:
                f.write(json.dumps(r) + "\n")
        paths.append(path)
    return paths


def read_shards(data_dir: str | Path, split: str) -> list[dict]:
    paths = sorted(Path(data_dir).glob(f"{split}_*.jsonl")) + sorted(Path(data_dir).glob(f"{split}_*.jsonl.gz"))
    if not paths:
        raise FileNotFoundError(f"no {split}_*.jsonl[.gz] shards in {data_dir} (make them with `loopylab policy data`)")
    records = []
    for p in paths:
        with gzip.open(p, "rt") if p.suffix == ".gz" else open(p) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{p}:{n}: not JSON ({e})") from None
    return records


# ---------------------------------------------------------------------------------------------- batches


@dataclass
class Encoded:
    ids: list[int]
    mask: list[int]


def encode_all(tokenizer: Tokenizer, texts: Sequence[str | dict], max_len: int) -> list[Encoded]:
    """Encode notebooks (texts, or shard records whose `explore` lists the section indices of random
    exploration moves, left out of the loss); a notebook longer than the context keeps its first
    `max_len + 1` tokens."""
    out = []
    for t in texts:
        skip = ()
        if isinstance(t, dict):
            t, skip = t["text"], set(t.get("explore", ()))
        ids, mask = encode_notebook(tokenizer, t, skip)
        out.append(Encoded(ids[: max_len + 1], mask[: max_len + 1]))
    return out


def collate(
    rows: Sequence[Encoded], pad_id: int, device=None, pad_to: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, mask) of shape (B, T): targets are inputs shifted by one; padding masked out.
    T is rounded up to a multiple of `pad_to` (fewer distinct shapes for torch.compile)."""
    import torch

    T = max(len(r.ids) for r in rows) - 1
    T = -(-T // pad_to) * pad_to
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), pad_id, dtype=torch.long)
    m = torch.zeros((len(rows), T), dtype=torch.float32)
    for i, r in enumerate(rows):
        n = len(r.ids) - 1
        x[i, :n] = torch.tensor(r.ids[:-1])
        y[i, :n] = torch.tensor(r.ids[1:])
        m[i, :n] = torch.tensor(r.mask[1:], dtype=torch.float32)
    if device is not None:
        x, y, m = x.to(device, non_blocking=True), y.to(device, non_blocking=True), m.to(device, non_blocking=True)
    return x, y, m


class NotebookBatches:
    """Endless shuffled batches of whole notebooks; similar lengths go together to waste less padding."""

    def __init__(
        self, rows: Sequence[Encoded], batch_size: int, pad_id: int, seed: int = 0, device=None, pad_to: int = 1
    ):
        if not rows:
            raise ValueError("no notebooks to train on")
        self.rows, self.batch_size, self.pad_id, self.device = list(rows), batch_size, pad_id, device
        self.pad_to = pad_to
        self.rng = random.Random(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for b in self.index_batches():
            yield collate([self.rows[i] for i in b], self.pad_id, self.device, self.pad_to)

    def index_batches(self) -> Iterator[list[int]]:
        """The same batches as row indices: every process under torchrun draws the same global batches
        (same seed) and takes its own slice of each."""
        while True:
            order = list(range(len(self.rows)))
            self.rng.shuffle(order)
            # sort within windows of 16 batches by length, then shuffle the batches
            window = self.batch_size * 16
            batches = []
            for w in range(0, len(order), window):
                chunk = sorted(order[w : w + window], key=lambda i: len(self.rows[i].ids))
                batches += [chunk[b : b + self.batch_size] for b in range(0, len(chunk), self.batch_size)]
            self.rng.shuffle(batches)
            for b in batches:
                if len(b) == self.batch_size or len(self.rows) < self.batch_size:
                    yield b


# ---------------------------------------------------------------------------------------------- generation


class ExploringExpert:
    """The lab's `eig` expert, except that with probability `noise` an experiment is replaced by a
    uniformly random candidate. The replaced experiments are remembered so training can leave them out
    of the loss: the policy sees the states they lead to, never learns to make them."""

    name = "eig-explore"

    def __init__(self, seed: int = 0, noise: float = 0.15, stream: int = 0):
        import numpy as np

        from loopylab.lab.agents import EIGAgent

        self.expert = EIGAgent(seed=seed)
        self.rng = np.random.default_rng([seed, 0xE1A, stream])
        self.noise = noise
        self.explored: list[int] = []  # ordinals (0-based) of the random experiments
        self.n_experiments = 0
        self.last_decision = None

    def propose(self, notebook):
        from loopylab.world import notebook as g

        proposal = self.expert.propose(notebook)
        self.last_decision = self.expert.last_decision
        if isinstance(proposal, g.Experiment):
            if len(notebook.candidates) > 1 and self.rng.random() < self.noise:
                proposal = notebook.candidates[int(self.rng.integers(len(notebook.candidates)))]
                self.last_decision = None
                self.explored.append(self.n_experiments)
            self.n_experiments += 1
        return proposal


_WORKER: dict = {}


def _explorer_factory(seed: int = 0, **kw) -> ExploringExpert:
    agent = ExploringExpert(seed, noise=_WORKER.get("noise", 0.15), stream=_WORKER.get("stream", 0))
    _WORKER["agent"] = agent
    return agent


def experiment_sections(text: str) -> list[int]:
    """Section indices of the experiments of a notebook, in order."""
    return [i for i, line in enumerate(text.splitlines()) if line.startswith("<|experiment_start|>")]


def generate_one(job: tuple[str, int, float]) -> dict:
    """One world investigated by the exploring expert, as a shard record (runs in a worker process)."""
    from loopylab.lab.agents import AGENTS, register_agent
    from loopylab.lab.evaluation import WorldTask, run_world

    kind, seed, noise = job
    _WORKER["noise"] = noise
    _WORKER["stream"] = sum(map(ord, kind))  # each question kind of a seed explores differently
    if ExploringExpert.name not in AGENTS:
        register_agent(ExploringExpert.name, _explorer_factory)
    _WORKER.pop("agent", None)
    # the expert is trusted (it writes training data): it runs in this process, where its choices can be read
    row = run_world(WorldTask(ExploringExpert.name, kind, seed, record_regret=False, run_seed=0), sealed=False)
    agent = _WORKER.pop("agent", None)
    if row.get("crashed") or not row.get("notebook"):
        return {"seed": seed, "kind": kind, "failed": row.get("exception", "no notebook")}
    exp_sections = experiment_sections(row["notebook"])
    explore = [exp_sections[k] for k in (agent.explored if agent else []) if k < len(exp_sections)]
    return {
        "seed": seed,
        "kind": kind,
        "text": row["notebook"],
        "success": bool(row["success"]),
        "experiments": int(row["experiments"]),
        "explore": explore,
    }


def generate(
    seeds: Sequence[int],
    out_dir: str | Path,
    workers: int | None = None,
    noise: float = 0.15,
    kinds: Sequence[str] | None = None,
    progress: bool = True,
) -> dict:
    """Notebooks of the exploring expert for every (question kind, seed), in parallel; shards by seed. `kinds`:
    None for every registered kind (`policy_kinds`).

    Every finished world is appended to `<out>/journal.jsonl` at once, so an interrupted run loses
    nothing: running the same command again skips the worlds already in the journal."""
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    kinds = list(kinds or policy_kinds())
    bad = [k for k in kinds if k not in policy_kinds()]
    if bad:
        raise ValueError(f"unknown question kind(s) {bad} (known: {', '.join(policy_kinds())})")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    journal = out_dir / "journal.jsonl"
    records = read_journal(journal)
    done = {(r["kind"], r["seed"]) for r in records}
    jobs = [(k, s, noise) for s in seeds for k in kinds if (k, s) not in done]
    workers = max(1, workers or os.cpu_count() or 1)
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("[bold]notebooks"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        task = bar.add_task("notebooks", total=len(jobs))
        bar.start()

    def finished(record: dict) -> None:
        records.append(record)
        with open(journal, "a") as f:
            f.write(json.dumps(record) + "\n")
        if bar:
            bar.advance(task)

    try:
        # always in worker processes (spawn: no inherited ZeroMQ or PyBullet state): a world that takes
        # its process down (a native crash in the sim or the transport) costs that world, not the run
        pending = list(jobs)
        crashes = 0
        while pending:
            try:
                with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
                    futures = {pool.submit(generate_one, j): j for j in pending}
                    for fut in as_completed(futures):
                        finished(fut.result())
                        pending.remove(futures[fut])
            except BrokenProcessPool as e:
                crashes += 1
                log.warning("a data worker died (%s); %d worlds left, restarting the pool", e, len(pending))
                if crashes > max(10, len(jobs) // 5):
                    raise RuntimeError(f"data workers keep dying ({crashes} times); see the log") from e
    finally:
        if bar:
            bar.stop()
    return write_dataset(records, out_dir, seeds=set(seeds), kinds=set(kinds))


def read_journal(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut short by an interrupted run
    return out


def write_dataset(
    records: Sequence[dict], out_dir: str | Path, seeds: set | None = None, kinds: set | None = None
) -> dict:
    """Shards from journal records: one notebook per (kind, seed), train/val split by seed."""
    unique = {}
    for r in records:
        if (seeds is None or r["seed"] in seeds) and (kinds is None or r["kind"] in kinds):
            unique[(r["kind"], r["seed"])] = r
    ok = sorted((r for r in unique.values() if "text" in r), key=lambda r: (r["seed"], r["kind"]))
    train = [r for r in ok if not is_val_seed(r["seed"])]
    val = [r for r in ok if is_val_seed(r["seed"])]
    write_shards(train, out_dir, "train")
    write_shards(val, out_dir, "val")
    return {
        "train": len(train),
        "val": len(val),
        "failed": len(unique) - len(ok),
        "success_rate": sum(r["success"] for r in ok) / max(1, len(ok)),
    }
