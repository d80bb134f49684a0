"""`loopylab demo` end to end: the story a newcomer reads — a question with units, each experiment with the
reason it was chosen and what it measured, the belief narrowing, the conclusion against the grader's
truth, why it stopped — and a belief plot in the report folder."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_tells_the_story(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "COLUMNS": "400"}  # rich wraps at 80 columns off a terminal
    proc = subprocess.run(
        [sys.executable, "-m", "loopylab.lab.cli", "demo", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = proc.stdout
    assert "Question: What is the friction coefficient μ of red_block, to within ±0.10?" in text
    assert "no unit" in text
    experiments = re.findall(r"^Experiment (\d+): (\w+) red_block (.*)$", text, re.M)
    assert len(experiments) >= 2, text
    assert len({skill for _, skill, _ in experiments}) >= 2, experiments  # of different kinds
    assert [int(n) for n, _, _ in experiments] == list(range(1, len(experiments) + 1))
    assert len(re.findall(r"^  why +.*expected", text, re.M)) == len(experiments)  # a reason for each
    saw = re.findall(r"^  saw +(.*)$", text, re.M)
    measured = [s for s in saw if re.search(r"\d (m|N|kg)\b", s)]  # the raw observation, with units
    assert len(saw) == len(experiments) and measured, saw
    assert all(s in measured or s.startswith("the experiment failed") for s in saw), saw
    # the belief after the prior and after each experiment: estimate ± half-width and what it means
    beliefs = re.findall(
        r"^  belief +μ ≈ ([\d.]+) ± ([\d.]+) \(90% of the belief lies within ([\d.]+) – ([\d.]+)\)", text, re.M
    )
    assert len(beliefs) == len(experiments) + 1, text
    halves = [float(h) for _, h, _, _ in beliefs]
    assert halves[-1] < halves[0] / 2, halves  # it narrowed
    conclusion = re.search(r"^Conclusion: μ = ([\d.]+) ± ([\d.]+) after (\d+) experiments", text, re.M)
    assert conclusion and int(conclusion[3]) == len(experiments)
    assert re.search(r"^  stopped +because .*sure", text, re.M)
    grader = re.search(
        r"^Grader's check .*true μ = ([\d.]+); the answer is off by ([\d.]+), tolerance ±0.10: "
        r"(met|missed) the tolerance",
        text,
        re.M,
    )
    assert grader, text
    summary = json.loads((out / "result.json").read_text())
    assert float(grader[1]) == summary["true_value"] and summary["answer"] == float(conclusion[1])
    assert (grader[3] == "met") == summary["success"] and summary["stop"] in ("confident", "not_worth", "budget")
    png = out / "belief.png"
    assert f"{png}" in text.replace("\n", "")
    assert png.stat().st_size > 20_000
