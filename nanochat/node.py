"""The policy on the bus: a node that serves `policy/propose`, for graphs where the model runs on
another (GPU) machine, and the agent that calls it.

Request  {"notebook": TEXT, "allowed": [kind, ...] (optional), "candidates": [experiment body, ...] (optional)}
Reply    {"ok": true, "kind": "experiment", "text": "push red_block +x 0.10 0.05", "decision_ms": 4.2}
      or {"ok": false, "error": "line 3: ..."} for a request that is not a notebook

Graph entry:

    [nodes.policy]
    run = "loopylab.nanochat.node:run_policy"
    params = { checkpoint = "nanochat/checkpoints", device = "cuda" }

and `loopylab run --agent nanochat-remote` (agent `RemotePolicyAgent`, the `loopylab.agents` entry point
`nanochat-remote`) on the lab's machine.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from loopylab.world import notebook as g

log = logging.getLogger("loopylab.nanochat.node")

SERVICE = "policy/propose"


class PolicyServer:
    """Answers `policy/propose` with one engine; requests are served one at a time (the KV cache is shared)."""

    def __init__(
        self, node, checkpoint: str | Path | None = None, device: str = "cpu", temperature: float = 0.0, seed: int = 0
    ):
        from loopylab.nanochat.checkpoint import SHIPPED_DIR, load_cached
        from loopylab.nanochat.engine import Engine, SampleConfig

        model, tokenizer, meta = load_cached(checkpoint or SHIPPED_DIR, device)
        self.engine = Engine(model, tokenizer, SampleConfig(temperature=temperature, seed=seed))
        self._lock = threading.Lock()
        self.service = node.service(SERVICE, self.handle)
        log.info(
            "policy node: %.2fM-parameter model (step %s) on %s serves %s",
            model.num_params() / 1e6,
            meta.get("step"),
            device,
            SERVICE,
        )

    def handle(self, request: dict) -> dict:
        from loopylab.nanochat.engine import allowed_kinds

        t0 = time.perf_counter()
        try:
            text = request["notebook"]
            sections = g.parse(text)
            candidates = request.get("candidates")
            allowed = request.get("allowed")
            if allowed is None:
                question = next((s.body for s in sections if s.kind == "question"), None)
                used = sum(s.kind == "experiment" for s in sections)
                left = (question.max_experiments - used) if question is not None else 0
                allowed = allowed_kinds(sections, left, candidates is None or bool(candidates))
            with self._lock:
                section = self.engine.propose(sections, allowed=allowed, candidates=candidates)
        except (KeyError, TypeError, ValueError) as e:  # GrammarError is a ValueError
            return {"ok": False, "error": f"{type(e).__name__}: {e}"}
        return {
            "ok": True,
            "kind": section.kind,
            "text": section.body.render(),
            "decision_ms": 1000 * (time.perf_counter() - t0),
        }

    def close(self) -> None:
        """Nothing to release: the service closes with its node."""


def run_policy(
    node, checkpoint: str | None = None, device: str = "cpu", temperature: float = 0.0, seed: int = 0
) -> PolicyServer:
    """Graph entry point (`run = "loopylab.nanochat.node:run_policy"`)."""
    return PolicyServer(node, checkpoint, device, temperature, seed)


class RemotePolicyAgent:
    """The lab's agent interface, answered by a policy node elsewhere on the bus."""

    name = "nanochat-remote"

    def __init__(self, seed: int = 0, bus: str | None = None, timeout: float = 30.0):
        from loopylab.bus import Node

        self.node = Node(f"policy_client_{seed}", bus)
        self.timeout = timeout
        self.decision_s: list[float] = []

    def propose(self, notebook):
        from loopylab.nanochat.engine import allowed_kinds

        t0 = time.perf_counter()
        request = {
            "notebook": notebook.text,
            "allowed": allowed_kinds(notebook.sections, notebook.budget_left, bool(notebook.candidates)),
            "candidates": [c.render() for c in notebook.candidates],
        }
        reply = self.node.call(SERVICE, request, timeout=self.timeout)
        if not reply.get("ok"):
            raise RuntimeError(f"policy node refused the notebook: {reply.get('error')}")
        self.decision_s.append(time.perf_counter() - t0)
        return g.parse_body(reply["kind"], reply["text"])

    def close(self) -> None:
        self.node.close()
