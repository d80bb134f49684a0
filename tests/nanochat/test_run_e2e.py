"""`loopylab run --agent nanochat` end to end with the shipped checkpoint: the lab's CLI starts the sim
bench, the policy writes the hypothesis, the experiments and the conclusion, the lab runs every call."""

import json
import subprocess
import sys
from pathlib import Path

from loopylab.nanochat.checkpoint import SHIPPED_DIR, load_meta
from loopylab.world import notebook as g

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_checkpoint_is_small_and_complete():
    meta = load_meta(SHIPPED_DIR)
    size = sum(p.stat().st_size for p in SHIPPED_DIR.rglob("*") if p.is_file())
    assert size < 8_000_000, f"shipped checkpoint is {size / 1e6:.1f} MB"
    assert meta["val_bpb"] is not None and (SHIPPED_DIR / "tokenizer" / "tokenizer.pkl").exists()


def test_loopylab_run_with_the_nanochat_agent(tmp_path):
    out = tmp_path / "report"
    cmd = [
        sys.executable,
        "-m",
        "loopylab.lab.cli",
        "run",
        "-q",
        "estimate mass of red_block within 10%",
        "--seed",
        "2",
        "--agent",
        "nanochat",
        "--out",
        str(out),
        "--quiet",
    ]
    proc = subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    sections = g.policy_sections(g.parse((out / "notebook.txt").read_text()))  # the audit lines left out
    kinds = [s.kind for s in sections]
    assert kinds[:3] == ["question", "scene", "hypothesis"] and kinds[-1] == "conclusion"
    assert kinds.count("experiment") == summary["experiments"] >= 1
    question = sections[0].body
    for i, s in enumerate(sections):  # every call the model wrote was in the grid where the objects were then
        if s.kind == "experiment":
            assert s.body.object in question.objects
            assert "not in the experiment grid" not in sections[i + 1].body.render()
    answer = sections[-1].body.answers[0]
    assert answer.quantity == "mass" and answer.object == "red_block"
