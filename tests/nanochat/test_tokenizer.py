import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loopylab.nanochat.tokenizer import Tokenizer, encode_notebook, special_tokens
from loopylab.world import notebook as grammar
from tests.nanochat.conftest import random_notebook


def test_special_tokens_are_single_ids_at_the_top(tokenizer):
    specials = special_tokens()
    assert specials[0] == "<|bos|>" and len(specials) == 1 + 2 * len(grammar.KINDS)
    ids = [tokenizer.special_id(s) for s in specials]
    assert ids == list(range(tokenizer.vocab_size - len(specials), tokenizer.vocab_size))
    assert tokenizer.vocab_size == 400


def test_round_trip_on_notebooks(tokenizer, notebooks):
    for text in notebooks[:50]:
        ids = tokenizer.encode(text)
        assert tokenizer.decode(ids) == text
        nb_ids, mask = encode_notebook(tokenizer, text)
        assert nb_ids[0] == tokenizer.bos_id and nb_ids[1:] == ids
        assert len(mask) == len(nb_ids)


def test_bpe_compresses_notebooks(tokenizer, notebooks):
    text = notebooks[0]
    assert len(tokenizer.encode(text)) < len(text.encode()) / 2


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000))
def test_round_trip_on_unseen_notebooks(tokenizer, seed):
    text = grammar.render(random_notebook(random.Random(seed)))
    assert tokenizer.decode(tokenizer.encode(text)) == text


@settings(max_examples=40, deadline=None)
@given(st.text(max_size=60))
def test_round_trip_on_any_text(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode_ordinary(text)) == text


def test_loss_mask_covers_exactly_model_written_sections(tokenizer, notebooks):
    text = notebooks[3]
    ids, mask = encode_notebook(tokenizer, text)
    written = tokenizer.decode([i for i, m in zip(ids, mask) if m])
    expected = "".join(s.render() for s in grammar.parse(text) if s.kind in ("hypothesis", "experiment", "conclusion"))
    assert written == expected
    forced = {tokenizer.section_ids(k)[0] for k in ("question", "scene", "observation", "belief")}
    assert all(m == 0 for i, m in zip(ids, mask) if i in forced)


def test_bad_notebook_text_is_a_clear_error(tokenizer):
    with pytest.raises(ValueError, match="text between sections"):
        encode_notebook(tokenizer, "hello<|question_start|>x<|question_end|>")


def test_save_load(tmp_path, tokenizer, notebooks):
    tokenizer.save(tmp_path)
    again = Tokenizer.load(tmp_path)
    assert again.vocab_size == tokenizer.vocab_size
    assert again.encode(notebooks[1]) == tokenizer.encode(notebooks[1])
    assert (tmp_path / "tokenizer" / "token_bytes.pt").exists()
    with pytest.raises(FileNotFoundError):
        Tokenizer.load(tmp_path / "nowhere")


def test_too_small_vocab_is_refused(notebooks):
    with pytest.raises(ValueError, match="256 byte tokens"):
        Tokenizer.train(notebooks[:5], vocab_size=260)
