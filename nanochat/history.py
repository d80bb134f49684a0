"""A training run's history next to its checkpoint: `history.csv` (step, train loss, val bpb where it was
measured) and `history.png` (both curves against the step, with labelled axes)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("loopylab.nanochat.history")

CSV_NAME, PNG_NAME = "history.csv", "history.png"


def write_history(
    out_dir: str | Path, losses: Sequence[float], val_bpb: Sequence[tuple[int, float]], title: str = ""
) -> list[Path]:
    """Write the CSV and the PNG into `out_dir`; steps count from 1. Returns the files written (the PNG is
    left out, with a log line, where matplotlib is not installed, e.g. on a torch-only GPU box)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bpb_at = dict(val_bpb)
    with open(out / CSV_NAME, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "train_loss", "val_bpb"])
        for step, loss in enumerate(losses, 1):
            w.writerow([step, f"{loss:.6f}", f"{bpb_at[step]:.6f}" if step in bpb_at else ""])
    written = [out / CSV_NAME]
    try:
        written.append(plot_history(out / PNG_NAME, losses, val_bpb, title))
    except ImportError:
        log.info("matplotlib is not installed: no %s (the CSV has the same figures)", PNG_NAME)
    return written


def plot_history(path: Path, losses: Sequence[float], val_bpb: Sequence[tuple[int, float]], title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    ax.plot(range(1, len(losses) + 1), losses, color="tab:blue", lw=1, label="train loss")
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (nats per model-written token)", color="tab:blue")
    if val_bpb:
        right = ax.twinx()
        steps, bpbs = zip(*val_bpb)
        right.plot(steps, bpbs, "o-", color="tab:orange", label="val bpb")
        right.set_ylabel("val bits per byte", color="tab:orange")
    ax.set_title(title or "policy training")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
