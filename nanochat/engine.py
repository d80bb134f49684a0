"""The inference engine: KV-cache generation of notebook sections under the notebook grammar.

This is nanochat's tool-call pattern applied to a lab notebook. The model writes a hypothesis, an
experiment or a conclusion; when it closes an experiment the engine hands the call to a callback (the
lab runs it on the robot) and forces the returned observation and belief into the context, exactly as
nanochat forces calculator output after `<|python_end|>`.

Decoding is constrained so that whatever the weights say, the text parses:
- the next section may only start with a marker the notebook allows at that point;
- experiment bodies come from a token trie over the tokenizations of the lab's finite candidate grid
  (`loopylab.lab.experiments.candidate_experiments`): existing objects, skill arguments within the grid's limits;
- conclusions must answer the question with an answer the notebook's beliefs support (an estimate a
  belief reported, or the order of a belief's means); before any belief, its quantity and object with
  canonical numbers, or a permutation of the objects for a ranking; for every other registered kind (a model,
  where it stops, a centre of mass, is it attached) the belief engine's answer now or a belief's clause that the
  kind reads as an answer (`lab.kinds` `answer_of`), and before any, "none of my hypotheses explains OBJ";
- hypotheses are ranges of the parameters of the question's objects, at most one clause per pair,
  checked on partial text with the `regex` module's partial matching (as `loopylab.world.notebook.prefix_ok` does),
  and only one hypothesis per notebook (the lab resets its belief engine on each).
A free-form body that runs into a dead end or past `max_body_tokens` is replaced by a safe default and
counted in `stats.fallbacks`; the engine never raises on model output.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import regex
import torch

from loopylab.lab import kinds
from loopylab.lab.experiments import valid_bodies, workspace
from loopylab.nanochat.gpt import GPT, KVCache
from loopylab.nanochat.tokenizer import Tokenizer, encode_notebook
from loopylab.world import notebook as grammar
from loopylab.world.notebook import Belief, Conclusion, Experiment, Hypothesis, Observation, Question, Scene, Section

# which sections the model may open after each kind of line
NEXT_KINDS = {
    "scene": ("hypothesis", "experiment", "conclusion"),
    "hypothesis": ("experiment", "conclusion"),
    "belief": ("hypothesis", "experiment", "conclusion"),
    "observation": ("hypothesis", "experiment", "conclusion"),  # a notebook without a belief engine
    "question": ("hypothesis", "experiment", "conclusion"),
    "conclusion": (),
}
WIDE_RANGES = {"friction": (0.2, 0.9), "mass": (0.05, 0.6), "restitution": (0.1, 0.8), "slide": (0.0, 0.3)}


@dataclass
class SampleConfig:
    temperature: float = 0.0  # 0: argmax
    top_k: int = 20
    max_body_tokens: int = 200  # a hypothesis over three objects is ~110 tokens
    seed: int | None = None


@dataclass
class EngineStats:
    decisions: int = 0
    generated_tokens: int = 0
    forced_tokens: int = 0
    fallbacks: int = 0
    experiments: int = 0
    by_kind: dict = field(default_factory=dict)


class TokenTrie:
    """Prefix tree over token sequences; each full sequence ends in the section's end token."""

    def __init__(self, sequences: Sequence[Sequence[int]]):
        self.root: dict = {}
        for seq in sequences:
            node = self.root
            for t in seq:
                node = node.setdefault(t, {})


class Engine:
    def __init__(self, model: GPT, tokenizer: Tokenizer, sample: SampleConfig | None = None, robot: str | None = None):
        if tokenizer.vocab_size != model.config.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens, model {model.config.vocab_size}")
        self.model = model.eval()
        self.tok = tokenizer
        self.sample = sample or SampleConfig()
        self.workspace = workspace(robot)  # the arm's grid, for bodies when the caller gives no candidates
        self.device = next(model.parameters()).device
        self.stats = EngineStats()
        self.gen = torch.Generator().manual_seed(self.sample.seed if self.sample.seed is not None else 0)
        self.newline = tokenizer.encode_ordinary("\n")
        self.start_id = {k: tokenizer.section_ids(k)[0] for k in grammar.KINDS}
        self.end_id = {k: tokenizer.section_ids(k)[1] for k in grammar.KINDS}
        # text of every token for prefix checks; tokens that are not plain one-line ASCII never go in a body
        self.token_text: list[str | None] = []
        for i in range(tokenizer.vocab_size):
            if tokenizer.is_special(i):
                self.token_text.append(None)
                continue
            b = tokenizer.enc.decode_single_token_bytes(i)
            ok = b.isascii() and b"\n" not in b and b"\r" not in b
            self.token_text.append(b.decode("ascii") if ok else None)
        self._tokens: list[int] = []  # ids whose keys/values are in the cache
        self._cache: KVCache | None = None
        self._last_logits: torch.Tensor | None = None
        self._tries: dict[str, TokenTrie] = {}

    # ------------------------------------------------------------------ context and the KV cache
    @torch.inference_mode()
    def _feed(self, ids: Sequence[int]) -> torch.Tensor:
        """Append ids to the context (one forward pass for all of them); return the last logits."""
        if not ids:
            return self._last_logits
        need = len(self._tokens) + len(ids)
        if self._cache is None or need > self._cache.max_len:
            self._rebuild_cache(need)
        x = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        logits = self.model(x, kv_cache=self._cache)
        self._tokens += list(ids)
        self._last_logits = logits[0, -1].float().cpu()
        return self._last_logits

    def _rebuild_cache(self, need: int) -> None:
        """Grow the cache (re-encoding what it held); the rotary table bounds the longest context."""
        limit = self.model.rotary_len
        if need > limit:
            raise ContextFull(f"context of {need} tokens exceeds the model's {limit}")
        size = min(limit, max(256, 2 ** math.ceil(math.log2(need + 64))))
        old = self._tokens
        self._cache = KVCache(self.model.config, 1, size, device=self.device)
        self._tokens = []
        if old:
            self._feed(old)

    def reset(self) -> None:
        self._tokens, self._cache, self._last_logits = [], None, None

    def sync(self, ids: Sequence[int]) -> torch.Tensor:
        """Make the context equal `ids`, reusing the cached common prefix; return the next-token logits."""
        ids = list(ids)
        common = 0
        for a, b in zip(self._tokens, ids):
            if a != b:
                break
            common += 1
        if common == len(ids) == len(self._tokens) and self._last_logits is not None:
            return self._last_logits
        common = min(common, len(ids) - 1)  # re-feed at least one token to get fresh logits
        if self._cache is not None:
            self._cache.pos = common  # rolling back a KV cache is just moving its end
        self._tokens = self._tokens[:common]
        self.stats.forced_tokens += len(ids) - common
        return self._feed(ids[common:])

    # ------------------------------------------------------------------ sampling
    def _choose(self, logits: torch.Tensor, allowed: Sequence[int]) -> int:
        allowed = list(allowed)
        if len(allowed) == 1:
            return allowed[0]
        sub = logits[allowed]
        if self.sample.temperature <= 0:
            return allowed[int(sub.argmax())]
        k = min(self.sample.top_k, len(allowed)) if self.sample.top_k else len(allowed)
        vals, idx = sub.topk(k)
        probs = torch.softmax(vals / self.sample.temperature, dim=-1)
        return allowed[int(idx[torch.multinomial(probs, 1, generator=self.gen)])]

    def _choose_checked(self, logits: torch.Tensor, ok: Callable[[int], bool]) -> int | None:
        """Best (or sampled among the top-k) token passing `ok`, checking candidates in logit order."""
        want = 1 if self.sample.temperature <= 0 else max(1, self.sample.top_k)
        good = []
        for t in torch.argsort(logits, descending=True).tolist():
            if ok(t):
                good.append(t)
                if len(good) >= want:
                    break
        if not good:
            return None
        return self._choose(logits, good)

    # ------------------------------------------------------------------ sections
    def _trie(self, key: str, bodies: Sequence[str], kind: str) -> TokenTrie:
        if key not in self._tries:
            if len(self._tries) > 256:
                self._tries.clear()
            end = self.end_id[kind]
            self._tries[key] = TokenTrie([self.tok.encode_ordinary(b) + [end] for b in bodies])
        return self._tries[key]

    def _write_trie(self, logits: torch.Tensor, trie: TokenTrie, kind: str) -> str:
        """Walk the trie: the model chooses at every branch; a stretch without a choice goes through
        the model in one forward pass. The closing tokens are not fed now: the next `sync` feeds them
        together with whatever the lab appends (one forward pass instead of two)."""
        end = self.end_id[kind]
        node, body = trie.root, []
        while True:
            t = self._choose(logits, list(node))
            run = [t]
            node = node[t]
            while t != end and len(node) == 1:
                t = next(iter(node))
                run.append(t)
                node = node[t]
            self.stats.generated_tokens += len(run)
            if run[-1] == end:
                body += run[:-1]
                return self.tok.decode(body)
            body += run
            logits = self._feed(run)

    def _write_free(
        self,
        logits: torch.Tensor,
        kind: str,
        pattern: regex.Pattern,
        complete: Callable[[str], bool],
        fallback: Callable[[], str],
    ) -> str:
        """Token-by-token under a regex checked on partial text; `complete` gates the end token."""
        end = self.end_id[kind]
        text, n = "", 0

        def ok(t: int) -> bool:
            if t == end:
                return complete(text)
            piece = self.token_text[t]
            return piece is not None and pattern.fullmatch(text + piece, partial=True) is not None

        while n < self.sample.max_body_tokens:
            t = self._choose_checked(logits, ok)
            if t is None:
                break
            self.stats.generated_tokens += 1
            if t == end:  # fed lazily by the next sync, with what the lab appends
                return text
            text += self.token_text[t]
            n += 1
            logits = self._feed([t])
        # dead end or too long: roll the partial body back and write the safe default instead
        self.stats.fallbacks += 1
        self._cache.pos -= n
        self._tokens = self._tokens[: len(self._tokens) - n]
        return fallback()  # fed by the next sync

    def _write_body(
        self,
        kind: str,
        logits: torch.Tensor,
        question: Question,
        scene: Scene,
        sections: Sequence[Section],
        candidates: Sequence[str] | None = None,
        offered: Sequence[str] = (),
    ) -> str:
        if kind == "experiment":
            bodies = (
                list(candidates)
                if candidates is not None
                else valid_bodies("experiment", scene, question, self.workspace)
            )
            if not bodies:  # nothing in the grid is safe here: weighing moves nothing sideways
                bodies = [Experiment("weigh", question.object).render()]
            key = f"exp|{scene.render()}|{question.render()}|{hash(tuple(bodies))}"
            return self._write_trie(logits, self._trie(key, bodies, kind), kind)
        if kind == "conclusion" and (answers := conclusion_candidates(question, sections, offered)):
            key = f"concl|{hash(tuple(answers))}"
            return self._write_trie(logits, self._trie(key, answers, kind), kind)
        if kind == "conclusion" and (prop := kinds.of(question).ranks) is not None:
            bodies = [grammar.Ranking(prop, p).render() for p in itertools.permutations(question.objects)]
            return self._write_trie(logits, self._trie(f"rank|{question.render()}", bodies, kind), kind)
        if kind == "conclusion" and (qty := answer_quantity(question)) is None:  # nothing to go on yet: one answer
            body = default_conclusion(question, sections, offered).render()
            return self._write_trie(logits, self._trie(f"default|{body}", [body], kind), kind)
        if kind == "conclusion":
            d = grammar.DECIMALS[qty]
            pattern = _compile(rf"{qty} {regex.escape(question.object)} {grammar.num_re(d)} {grammar.num_re(d)}")
            return self._write_free(
                logits,
                kind,
                pattern,
                lambda t: pattern.fullmatch(t) is not None and grammar.body_complete(kind, t, scene),
                lambda: default_conclusion(question, sections, offered).render(),
            )
        pattern = _compile(hypothesis_regex(question))
        return self._write_free(
            logits,
            kind,
            pattern,
            lambda t: pattern.fullmatch(t) is not None and grammar.body_complete(kind, t, scene),
            lambda: default_hypothesis(question).render(),
        )

    def propose(
        self,
        sections: Sequence[Section],
        allowed: Sequence[str] | None = None,
        candidates: Sequence[str] | None = None,
        answers: Sequence[str] = (),
    ) -> Section:
        """The model's next section (hypothesis, experiment or conclusion) after `sections`. `allowed`
        narrows the kinds the model may open; `candidates` are the experiment bodies it may choose from
        (default: the lab's grid for the scene and question); `answers` are conclusion bodies the belief engine
        offers now (its answer), which a question whose answer is no single estimate may conclude with."""
        question, scene = question_and_scene(sections)
        n_exp = sum(s.kind == "experiment" for s in sections)
        last = sections[-1].kind
        kinds = list(allowed) if allowed is not None else list(NEXT_KINDS.get(last, ("conclusion",)))
        if last == "experiment":
            raise ValueError("the notebook ends in an experiment: its observation must come first")
        if any(s.kind == "hypothesis" for s in sections):
            kinds = [k for k in kinds if k != "hypothesis"]  # the lab resets its belief on a hypothesis
        if n_exp >= question.max_experiments:
            kinds = ["conclusion"]
        kinds = [k for k in kinds if k in ("hypothesis", "experiment", "conclusion")] or ["conclusion"]
        ids, _ = encode_notebook(self.tok, grammar.render(sections))
        try:
            logits = self.sync(ids)
        except ContextFull:
            ids = crop_context(self.tok, sections, self.model.rotary_len - self.sample.max_body_tokens - 8)
            self.reset()
            logits = self.sync(ids)
        kind_of = {self.start_id[k]: k for k in kinds}
        start = self._choose(logits, list(kind_of))
        kind = kind_of[start]
        self.stats.generated_tokens += 1
        logits = self._feed([start])
        body = self._write_body(kind, logits, question, scene, sections, candidates, answers)
        self.stats.decisions += 1
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        if kind == "experiment":
            self.stats.experiments += 1
        try:
            return Section(kind, grammar.parse_body(kind, body))
        except grammar.GrammarError:  # cannot happen under the constraints above; stay safe regardless
            self.stats.fallbacks += 1
            fallback = (
                default_hypothesis(question)
                if kind == "hypothesis"
                else default_conclusion(question, sections, answers)
            )
            return Section(fallback.kind, fallback)

    def investigate(
        self,
        question: Question,
        scene: Scene,
        execute: Callable[[Experiment], tuple[Observation, Belief | None]],
        on_section: Callable[[Section], None] | None = None,
    ) -> list[Section]:
        """Run a whole investigation: the tool-call loop. `execute` runs an experiment and returns the
        observation and the updated belief, which are forced into the context."""
        sections = [Section("question", question), Section("scene", scene)]
        for s in sections:
            on_section and on_section(s)
        max_decisions = 4 * question.max_experiments + 4
        for _ in range(max_decisions):
            sec = self.propose(sections)
            sections.append(sec)
            on_section and on_section(sec)
            if sec.kind == "conclusion":
                return sections
            if sec.kind == "experiment":
                observation, belief = execute(sec.body)
                for body in (observation, belief):
                    if body is not None:
                        forced = Section(body.kind, body)
                        sections.append(forced)
                        on_section and on_section(forced)
        sec = self.propose(sections, allowed=["conclusion"])
        sections.append(sec)
        on_section and on_section(sec)
        return sections


class ContextFull(RuntimeError):
    pass


_PATTERNS: dict[str, regex.Pattern] = {}


def _compile(pattern: str) -> regex.Pattern:
    if pattern not in _PATTERNS:
        if len(_PATTERNS) > 256:
            _PATTERNS.clear()
        _PATTERNS[pattern] = regex.compile(pattern)
    return _PATTERNS[pattern]


def allowed_kinds(sections: Sequence[Section], budget_left: int, has_candidates: bool = True) -> list[str]:
    """The lab's protocol: a hypothesis first (one per notebook), then experiments or a conclusion;
    only a conclusion once the budget is spent or nothing can be run."""
    if not any(s.kind == "hypothesis" for s in sections):
        return ["hypothesis"]
    if budget_left <= 0 or not has_candidates:
        return ["conclusion"]
    return ["experiment", "conclusion"]


def hypothesis_regex(question: Question) -> str:
    """Ranges of the hidden parameters of the question's objects: at most one clause per (parameter,
    object), so a body is bounded however the weights behave."""
    objs = "(?:" + "|".join(regex.escape(o) for o in sorted(question.objects, key=lambda o: (-len(o), o))) + ")"
    clause = (
        "(?:"
        + "|".join(
            rf"{p} {objs} in {grammar.num_re(grammar.DECIMALS[p])} {grammar.num_re(grammar.DECIMALS[p])}"
            for p in grammar.PARAMS
        )
        + ")"
    )
    n = len(grammar.PARAMS) * len(question.objects)
    return rf"{clause}(?:; {clause}){{0,{n - 1}}}"


def question_and_scene(sections: Sequence[Section]) -> tuple[Question, Scene]:
    question = next((s.body for s in sections if s.kind == "question"), None)
    scene = next((s.body for s in reversed(sections) if s.kind == "scene"), None)  # objects move: the latest
    if question is None or scene is None:
        raise ValueError("a notebook needs a question and a scene before the policy can propose")
    return question, scene


def crop_context(tok: Tokenizer, sections: Sequence[Section], max_tokens: int) -> list[int]:
    """Question and scene, then as many of the latest sections as fit (oldest dropped first)."""
    head, tail = list(sections[:2]), list(sections[2:])
    while tail:
        ids, _ = encode_notebook(tok, grammar.render(head + tail))
        if len(ids) <= max_tokens:
            return ids
        tail = tail[1:]
    return encode_notebook(tok, grammar.render(head))[0]


HALF_WIDTH_Z = 1.645  # a 90 % interval of a normal belief: the half-width a conclusion reports


def answer_quantity(question: Question) -> str | None:
    """The grammar quantity a question's answer is one estimate of (friction, mass, restitution, a predicted
    slide); None for a ranking and for kinds answered otherwise (a model, a position, an offset, ...)."""
    if kinds.of(question).ranks is not None:
        return None
    qty = "slide" if question.kind == "predict" else question.kind
    return qty if qty in grammar.DECIMALS else None


def _estimates(belief: Belief) -> dict[tuple[str, str], grammar.Estimate]:
    return {(e.quantity, e.object): e for e in belief.estimates if isinstance(e, grammar.Estimate)}


def answers_question(question: Question, conclusion: Conclusion) -> bool:
    """Whether a conclusion answers the question, as its kind reads conclusions (lab/kinds.py `answer_of`)."""
    try:
        return kinds.of(question).answer_of(question, conclusion) is not None
    except (AttributeError, TypeError, ValueError):
        return False


def _supporting(question: Question, belief: Belief) -> list:
    """A belief's clauses that answer the question alone, as the belief wrote them (a model it gives p 0, one an
    observation refuted, supports nothing)."""
    return [
        c
        for c in belief.estimates
        if not isinstance(c, grammar.Rejection)
        and getattr(c, "p", 1.0) > 0
        and answers_question(question, Conclusion((c,)))
    ]


def conclusion_candidates(question: Question, sections: Sequence[Section], offered: Sequence[str] = ()) -> list[str]:
    """The answers the notebook's beliefs support, oldest first: for an estimate, each belief's value
    of the question's quantity (half-width from its SD); for a ranking, each belief's order of the
    means. The belief engine is the model's calculator: the model decides when to answer and which
    reported estimate to give, it does not do arithmetic on the numbers.

    Any other kind (from the kind registry: a model, a position, an offset, is it attached) concludes with an
    answer the belief engine `offered` now, or any one clause of a belief that answers the question as its kind
    reads it (`answer_of`), as the belief wrote it."""
    out: list[str] = []
    qty, prop = answer_quantity(question), kinds.of(question).ranks
    for s in sections:
        if s.kind != "belief":
            continue
        assert isinstance(s.body, Belief)
        est = _estimates(s.body)
        if prop is not None:
            if not all((prop, o) in est for o in question.objects):
                continue
            order = sorted(question.objects, key=lambda o: (-est[(prop, o)].value, question.objects.index(o)))
            bodies = [grammar.Ranking(prop, tuple(order)).render()]
        elif qty is not None:
            e = est.get((qty, question.object))
            if e is None:
                continue
            bodies = [grammar.Estimate(qty, question.object, e.value, HALF_WIDTH_Z * e.spread).render()]
        else:
            bodies = [Conclusion((c,)).render() for c in _supporting(question, s.body)]
        out += [b for b in bodies if b not in out]
    if qty is None and prop is None:
        out += [b for b in offered if b not in out and grammar.body_complete("conclusion", b)]
    return out


def last_belief(sections: Sequence[Section]) -> Belief | None:
    return next((s.body for s in reversed(sections) if s.kind == "belief"), None)


def default_hypothesis(question: Question) -> Hypothesis:
    """The lab's prior box, the hypothesis every built-in agent starts from."""
    from loopylab.lab.agents import prior_hypothesis

    return prior_hypothesis(question)


def default_conclusion(question: Question, sections: Sequence[Section], offered: Sequence[str] = ()) -> Conclusion:
    """The belief engine's current answer (or a neutral guess before any belief); for a kind answered by no
    single estimate, the latest answer it supports, or before any: that none of the models explains it."""
    belief = last_belief(sections)

    def estimate(qty: str, obj: str):
        if belief is not None and (qty, obj) in _estimates(belief):
            return _estimates(belief)[(qty, obj)]
        lo, hi = WIDE_RANGES.get(qty, (0.0, 0.5))
        return grammar.Estimate(qty, obj, (lo + hi) / 2, (hi - lo) / 4)

    if (prop := kinds.of(question).ranks) is not None:
        means = {o: estimate(prop, o).value for o in question.objects}
        return Conclusion((grammar.Ranking(prop, tuple(sorted(question.objects, key=lambda o: -means[o]))),))
    qty = answer_quantity(question)
    if qty is None:
        if offered := [b for b in offered if grammar.body_complete("conclusion", b)]:
            body = grammar.parse_body("conclusion", offered[-1])
            assert isinstance(body, Conclusion)
            return body
        clauses = _supporting(question, belief) if belief is not None else []
        if clauses:  # the most probable (a model's p; clauses without one come first as they are)
            return Conclusion((max(clauses, key=lambda c: getattr(c, "p", 1.0)),))
        return Conclusion((grammar.Unexplained(question.object),))
    e = estimate(qty, question.object)
    return Conclusion((grammar.Estimate(qty, question.object, e.value, 2 * e.spread),))
