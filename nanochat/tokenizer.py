"""The notebook tokenizer: a byte-level BPE trained with `rustbpe`, run with `tiktoken`.

Special tokens are `<|bos|>` plus the start/end markers of every notebook section (question, scene,
hypothesis, experiment, observation, belief, conclusion), taken from `loopylab.world.notebook` so the two never
drift apart. Specials sit at the top of the vocabulary, as in nanochat. The encoding is pickled beside a
checkpoint (`<dir>/tokenizer/tokenizer.pkl`) with `token_bytes.pt`, the byte length of every token,
which val bpb needs.
"""

from __future__ import annotations

import pickle
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import tiktoken

if TYPE_CHECKING:  # torch only for saving token_bytes: notebooks can be made and encoded without it
    import torch

# GPT-4's split pattern with numbers in chunks of at most two digits (nanochat's choice)
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
    r"""|\s*[\r\n]|\s+(?!\S)|\s+"""
)
BOS = "<|bos|>"


def special_tokens() -> list[str]:
    """<|bos|> then each grammar section's start and end marker, in notebook order."""
    from loopylab.world import notebook as grammar

    return [BOS] + list(grammar.SPECIAL_TOKENS)


class Tokenizer:
    def __init__(self, enc: tiktoken.Encoding):
        self.enc = enc
        self.bos_id = enc.encode_single_token(BOS)

    # ---- training and persistence ----
    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int, specials: Sequence[str] | None = None, allow_smaller: bool = False
    ) -> Tokenizer:
        """Train so that the whole vocabulary (bytes + merges + specials) is exactly `vocab_size`; with
        `allow_smaller`, a corpus that runs out of pairs to merge gives a smaller vocabulary instead."""
        import logging

        import rustbpe

        logging.getLogger("rustbpe").setLevel(logging.WARNING)  # it logs every merge at INFO
        specials = list(specials or special_tokens())
        n_ordinary = vocab_size - len(specials)
        if n_ordinary < 256:
            raise ValueError(
                f"vocab_size {vocab_size} leaves fewer than 256 byte tokens after {len(specials)} special tokens"
            )
        bpe = rustbpe.Tokenizer()
        bpe.train_from_iterator(iter(_strip_specials(texts, specials)), n_ordinary, pattern=SPLIT_PATTERN)
        ranks = {bytes(k): v for k, v in bpe.get_mergeable_ranks()}
        if len(ranks) < n_ordinary and allow_smaller:
            n_ordinary = len(ranks)
        elif len(ranks) < n_ordinary:  # a small corpus runs out of pairs to merge
            raise ValueError(
                f"corpus too small: {len(ranks)} ordinary tokens learned, {n_ordinary} requested; lower vocab_size"
            )
        special_ids = {s: n_ordinary + i for i, s in enumerate(specials)}
        enc = tiktoken.Encoding(
            name="loopylab-notebook", pat_str=bpe.get_pattern(), mergeable_ranks=ranks, special_tokens=special_ids
        )
        return cls(enc)

    def save(self, directory: str | Path) -> Path:
        """`<directory>/tokenizer/tokenizer.pkl` (the pickled `tiktoken.Encoding`, as nanochat writes and
        reads it) and `token_bytes.pt`."""
        directory = Path(directory) / "tokenizer"
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "tokenizer.pkl", "wb") as f:
            pickle.dump(self.enc, f)
        import torch

        torch.save(self.token_bytes(), directory / "token_bytes.pt")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> Tokenizer:
        """Read `<directory>/tokenizer/tokenizer.pkl`: a pickled `tiktoken.Encoding` (nanochat's format and
        ours) or the dict of its fields that loopylab wrote before."""
        path = Path(directory) / "tokenizer" / "tokenizer.pkl"
        if not path.exists():
            raise FileNotFoundError(f"no tokenizer at {path}")
        with open(path, "rb") as f:
            state = pickle.load(f)
        if isinstance(state, dict):
            state = tiktoken.Encoding(
                name=state["name"],
                pat_str=state["pat_str"],
                mergeable_ranks=state["mergeable_ranks"],
                special_tokens=state["special_tokens"],
            )
        if not isinstance(state, tiktoken.Encoding):
            raise ValueError(f"{path} holds a {type(state).__name__}, not a tiktoken Encoding")
        if BOS not in state._special_tokens:
            raise ValueError(f"{path} has no {BOS} token: not a nanochat-style tokenizer")
        return cls(state)

    def missing_markers(self) -> list[str]:
        """The notebook grammar's special tokens this tokenizer lacks (a chat tokenizer lacks them all)."""
        return [s for s in special_tokens() if s not in self.enc._special_tokens]

    # ---- use ----
    @property
    def vocab_size(self) -> int:
        return self.enc.n_vocab

    def special_id(self, token: str) -> int:
        return self.enc.encode_single_token(token)

    def section_ids(self, name: str) -> tuple[int, int]:
        return self.special_id(f"<|{name}_start|>"), self.special_id(f"<|{name}_end|>")

    def is_special(self, token_id: int) -> bool:
        return token_id >= self.vocab_size - len(self.enc._special_tokens)

    def encode(self, text: str, prepend_bos: bool = False) -> list[int]:
        """Encode notebook text; the grammar's special markers in the text become their single ids."""
        ids = self.enc.encode(text, allowed_special="all")
        return [self.bos_id] + ids if prepend_bos else ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text in which special markers are plain characters (model-written section bodies)."""
        return self.enc.encode_ordinary(text)

    def decode(self, ids: Sequence[int]) -> str:
        return self.enc.decode(list(ids))

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self.enc.decode_bytes(list(ids))

    def token_bytes(self) -> torch.Tensor:
        """Bytes per token id (0 for specials): val bpb = nats / bytes over ordinary tokens."""
        import torch

        out = torch.zeros(self.vocab_size, dtype=torch.int32)
        for i in range(self.vocab_size):
            if not self.is_special(i):
                out[i] = len(self.enc.decode_single_token_bytes(i))
        return out


def _strip_specials(texts: Iterable[str], specials: Sequence[str]) -> Iterable[str]:
    """Split texts at special markers so BPE never merges across them (they are single ids anyway)."""
    import re

    pattern = re.compile("|".join(re.escape(s) for s in specials))
    for text in texts:
        for piece in pattern.split(text):
            if piece:
                yield piece


MODEL_WRITTEN = ("hypothesis", "experiment", "conclusion")  # the rest is prompt or forced by the lab
_LINE_RE = None


def encode_notebook(
    tokenizer: Tokenizer, text: str, skip_sections: Collection[int] = ()
) -> tuple[list[int], list[int]]:
    """Token ids of `<|bos|>` + a notebook, and a mask that is 1 where the model wrote the token:
    the start marker, body and end marker of hypothesis/experiment/conclusion sections. The question,
    scene, forced observations and beliefs, and the newlines between sections are 0 (never trained on),
    and so are the sections whose index is in `skip_sections` (e.g. the data's random exploration moves)."""
    import re

    global _LINE_RE
    if _LINE_RE is None:
        _LINE_RE = re.compile(r"<\|([a-z]+)_start\|>(.*?)<\|\1_end\|>(\n?)")
    ids, mask = [tokenizer.bos_id], [0]
    pos = 0
    for index, m in enumerate(_LINE_RE.finditer(text)):
        if m.start() != pos:
            raise ValueError(f"text between sections at offset {pos}: {text[pos : m.start()][:60]!r}")
        kind, body, newline = m.group(1), m.group(2), m.group(3)
        start, end = tokenizer.section_ids(kind)
        section = [start] + tokenizer.encode_ordinary(body) + [end]
        ids += section
        mask += [int(kind in MODEL_WRITTEN and index not in skip_sections)] * len(section)
        if newline:
            nl = tokenizer.encode_ordinary(newline)
            ids += nl
            mask += [0] * len(nl)
        pos = m.end()
    if pos != len(text):
        raise ValueError(f"unparsed notebook text at offset {pos}: {text[pos:][:60]!r}")
    return ids, mask
