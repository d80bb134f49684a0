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
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from nanochat.tokenizer import Tokenizer, encode_notebook

SHARD_SIZE = 2000            # notebooks per shard file
SHIPPED_DATA = Path(__file__).parent / "data"   # the small shard set the shipped checkpoint was trained on


def is_val_seed(seed: int) -> bool:
    return seed % 10 == 9


def parse_seeds(spec: str) -> list[int]:
    """'0:100' -> 0..99, '5' -> [5], '0:10,50:60' -> both ranges."""
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if ":" in part:
            a, b = part.split(":", 1)
            lo, hi = int(a or 0), int(b)
            if hi <= lo:
                raise ValueError(f"empty seed range {part!r}")
            out += range(lo, hi)
        else:
            out.append(int(part))
    if not out:
        raise ValueError(f"no seeds in {spec!r}")
    return out


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
            for r in records[i:i + shard_size]:
                f.write(json.dumps(r) + "\n")
        paths.append(path)
    return paths


def read_shards(data_dir: str | Path, split: str) -> list[dict]:
    paths = sorted(Path(data_dir).glob(f"{split}_*.jsonl")) + sorted(Path(data_dir).glob(f"{split}_*.jsonl.gz"))
    if not paths:
        raise FileNotFoundError(f"no {split}_*.jsonl[.gz] shards in {data_dir} (make them with `loopylab policy data`)")
    records = []
    for p in paths:
        with (gzip.open(p, "rt") if p.suffix == ".gz" else open(p)) as f:
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


def encode_all(tokenizer: Tokenizer, texts: Sequence[str], max_len: int) -> list[Encoded]:
    """Encode notebooks; a notebook longer than the context keeps its first `max_len + 1` tokens."""
    out = []
    for t in texts:
        ids, mask = encode_notebook(tokenizer, t)
        out.append(Encoded(ids[:max_len + 1], mask[:max_len + 1]))
    return out


def collate(rows: Sequence[Encoded], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, targets, mask) of shape (B, T): targets are inputs shifted by one; padding masked out."""
    T = max(len(r.ids) for r in rows) - 1
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

    def __init__(self, rows: Sequence[Encoded], batch_size: int, pad_id: int, seed: int = 0, device=None):
        if not rows:
            raise ValueError("no notebooks to train on")
        self.rows, self.batch_size, self.pad_id, self.device = list(rows), batch_size, pad_id, device
        self.rng = random.Random(seed)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        while True:
            order = list(range(len(self.rows)))
            self.rng.shuffle(order)
            # sort within windows of 16 batches by length, then shuffle the batches
            window = self.batch_size * 16
            batches = []
            for w in range(0, len(order), window):
                chunk = sorted(order[w:w + window], key=lambda i: len(self.rows[i].ids))
                batches += [chunk[b:b + self.batch_size] for b in range(0, len(chunk), self.batch_size)]
            self.rng.shuffle(batches)
            for b in batches:
                if len(b) == self.batch_size or len(self.rows) < self.batch_size:
                    yield collate([self.rows[i] for i in b], self.pad_id, self.device)
