import pytest
import torch

from loopylab.nanochat.gpt import GPT, GPTConfig, KVCache
from loopylab.nanochat.optim import MuonAdamW, Schedule, orthogonalize


def make_model(depth=2, vocab=128, seq=64, seed=0) -> GPT:
    model = GPT(GPTConfig.from_depth(depth, vocab, seq)).init_weights(seed)
    with torch.no_grad():  # zero-initialised projections would hide attention bugs: randomise them
        g = torch.Generator().manual_seed(seed + 1)
        for p in model.parameters():
            if p.ndim == 2 and not p.any():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


def test_sizing_by_depth():
    c = GPTConfig.from_depth(3, 500)
    assert (c.n_embd, c.n_head, c.n_kv_head, c.n_layer) == (192, 3, 3, 3)
    c = GPTConfig.from_depth(3, 500, head_dim=128)
    assert (c.n_embd, c.n_head) == (256, 2)  # 192 rounded up to the head dim
    with pytest.raises(ValueError):
        GPTConfig(n_embd=100, n_head=3)


def test_shapes_no_biases_untied():
    model = make_model()
    x = torch.randint(0, 128, (3, 17))
    assert model(x).shape == (3, 17, 128)
    assert all("bias" not in n for n, _ in model.named_parameters())
    assert model.transformer.wte.weight.data_ptr() != model.lm_head.weight.data_ptr()
    assert model(x).abs().max() <= 15.0  # softcap
    loss = model(x[:, :-1], x[:, 1:])
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_future_tokens_never_change_past_logits():
    model = make_model()
    x = torch.randint(0, 128, (2, 40))
    y = x.clone()
    y[:, 25:] = torch.randint(0, 128, (2, 15))
    with torch.no_grad():
        a, b = model(x), model(y)
    assert torch.equal(a[:, :25], b[:, :25])
    assert not torch.allclose(a[:, 25:], b[:, 25:])


def test_kv_cache_equals_full_recomputation():
    model = make_model()
    x = torch.randint(0, 128, (2, 40))
    with torch.no_grad():
        full = model(x)
        cache = KVCache(model.config, 2, 64)
        parts = [
            model(x[:, :13], kv_cache=cache),
            model(x[:, 13:14], kv_cache=cache),
            model(x[:, 14:30], kv_cache=cache),
        ]
        parts += [model(x[:, t : t + 1], kv_cache=cache) for t in range(30, 40)]
    assert cache.pos == 40
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    # rolling back the cache and continuing differently matches recomputation of the new sequence
    with torch.no_grad():
        cache.pos = 20
        y = x.clone()
        y[:, 20:] = (x[:, 20:] + 1) % 128
        cont = model(y[:, 20:], kv_cache=cache)
        torch.testing.assert_close(cont, model(y)[:, 20:], atol=1e-5, rtol=1e-5)


def test_greedy_generation_with_cache_matches_recompute():
    model = make_model(seed=3)
    prompt = torch.randint(0, 128, (1, 8))
    with torch.no_grad():
        seq, cache = prompt.clone(), KVCache(model.config, 1, 64)
        logits = model(prompt, kv_cache=cache)[:, -1]
        for _ in range(12):
            nxt = logits.argmax(-1, keepdim=True)
            assert torch.equal(nxt, model(seq)[:, -1].argmax(-1, keepdim=True))
            seq = torch.cat([seq, nxt], 1)
            logits = model(nxt, kv_cache=cache)[:, -1]


def test_masked_loss_ignores_masked_targets():
    model = make_model()
    x = torch.randint(0, 128, (2, 20))
    mask = torch.zeros(2, 19)
    mask[:, 10:] = 1
    t1, t2 = x[:, 1:].clone(), x[:, 1:].clone()
    t2[:, :9] = (t2[:, :9] + 7) % 128
    with torch.no_grad():
        assert torch.equal(model(x[:, :-1], t1, mask), model(x[:, :-1], t2, mask))


def test_orthogonalize_and_optimizer_step():
    g = torch.randn(32, 64)
    o = orthogonalize(g)
    sv = torch.linalg.svdvals(o)
    assert sv.max() < 1.3 and sv.min() > 0.5  # approximately orthogonal rows
    model = make_model()
    opt = MuonAdamW(model)
    sched = Schedule(total_steps=100, warmup=10, warmdown=0.5)
    assert sched(0) == pytest.approx(0.1) and sched(30) == 1.0 and sched(99) < 0.1
    x = torch.randint(0, 128, (4, 33))
    losses = []
    model.train()
    for step in range(15):
        loss = model(x[:, :-1], x[:, 1:])
        loss.backward()
        opt.set_lr_multiplier(sched(step + 20))
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_sliding_windows_as_nanochat_defines_them():
    """window_pattern tiles S (a quarter of sequence_len, rounded up to 128) and L over the layers, the
    last always L; below the short window it is plain causal attention, above it the cached path agrees."""
    cfg = GPTConfig.from_depth(3, 128, 256, window_pattern="sl")
    assert cfg.window_pattern == "SL" and cfg.window_sizes() == [128, 256, 256]
    assert GPTConfig.from_depth(4, 128, 2048, window_pattern="SSSL").window_sizes() == [
        512,
        512,
        512,
        2048,
    ]  # its code, not its comment (768)
    with pytest.raises(ValueError, match="window_pattern"):
        GPTConfig(window_pattern="SXL")
    torch.manual_seed(0)
    full = make_model(depth=3, seq=256)
    windowed = GPT(GPTConfig.from_depth(3, 128, 256, window_pattern="S")).eval()
    windowed.load_state_dict(full.state_dict())
    short, long = torch.randint(0, 128, (1, 120)), torch.randint(0, 128, (1, 300))
    with torch.no_grad():
        assert torch.equal(windowed(short), full(short))
        assert not torch.allclose(windowed(long)[:, 200:], full(long)[:, 200:], atol=1e-4)
        whole = windowed(long)
        cache = KVCache(windowed.config, 1, 320)
        parts = [windowed(long[:, :150], kv_cache=cache), windowed(long[:, 150:260], kv_cache=cache)]
        parts += [windowed(long[:, t : t + 1], kv_cache=cache) for t in range(260, 300)]
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-4, rtol=1e-4)


def test_training_flops_count_real_tokens_at_real_lengths():
    """MFU's numerator: 6 FLOPs per matmul weight per real token, and attention over each notebook's own
    length (capped by the layer's window), not the configured 2048 nor the padding."""
    model = GPT(GPTConfig.from_depth(2, 600, 2048))
    n_matmul = sum(p.numel() for n, p in model.named_parameters() if "wte" not in n)
    h, q = model.config.n_head, model.config.n_embd // model.config.n_head
    assert model.train_flops([670]) == 6 * n_matmul * 670 + 2 * 12 * h * q * 670 * 670
    padded_estimate = model.flops_per_token() * 2 * 900  # two rows padded to 900 at the configured length
    assert model.train_flops([400, 900]) < 0.75 * padded_estimate
    windowed = GPT(GPTConfig.from_depth(2, 600, 2048, window_pattern="S"))  # 512 then 2048
    assert windowed.train_flops([1000]) == 6 * n_matmul * 1000 + 12 * h * q * 1000 * (512 + 1000)
