"""The nanochat GPT: a pre-norm decoder-only transformer.

Same shape as karpathy/nanochat's core: parameter-free RMSNorm (also after the token embedding and
before the head), rotary position embeddings, QK-norm, ReLU^2 MLP, no biases, untied embedding and
head, and a tanh logit softcap. The model is sized by one knob, `depth`: width = 64 * depth rounded up
to the head dimension. Weights are float32 everywhere; on CUDA the trainer runs the forward pass under
bf16 autocast. Generation uses a `KVCache` so each new token costs one position of attention.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

# nanochat's values (revision 92d63d4); every one changes the function, so each is a config field that a
# checkpoint's meta records (see nanochat/arch.py), never a constant a loader silently assumes
LOGIT_SOFTCAP = 15.0
ROPE_BASE = 100_000.0
QK_SCALE = 1.2  # nanochat multiplies normalised q and k by 1.2: a slightly sharper attention at init
NANOCHAT_CONFIG_KEYS = ("sequence_len", "vocab_size", "n_layer", "n_head", "n_kv_head", "n_embd", "window_pattern")


@dataclass
class GPTConfig:
    sequence_len: int = 1024
    vocab_size: int = 1024
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 4
    n_embd: int = 256
    # nanochat's sliding windows, tiled over the layers (the last is always L): L attends to sequence_len
    # tokens back, S to a quarter of it (rounded up to 128); "L" is full attention for any notebook we train on
    window_pattern: str = "L"
    rope_base: float = ROPE_BASE
    qk_scale: float = QK_SCALE
    logit_softcap: float = LOGIT_SOFTCAP

    @classmethod
    def from_depth(
        cls, depth: int, vocab_size: int, sequence_len: int = 1024, head_dim: int = 64, **knobs
    ) -> GPTConfig:
        width = math.ceil(64 * depth / head_dim) * head_dim
        n_head = width // head_dim
        return cls(
            sequence_len=sequence_len,
            vocab_size=vocab_size,
            n_layer=depth,
            n_head=n_head,
            n_kv_head=n_head,
            n_embd=width,
            **knobs,
        )

    def to_dict(self) -> dict:
        """nanochat's `model_config` (exactly its GPTConfig fields, so its loader accepts it)."""
        d = asdict(self)
        return {k: d[k] for k in NANOCHAT_CONFIG_KEYS}

    def knobs(self) -> dict:
        """The numbers that change the function but are not in nanochat's model_config."""
        return {"rope_base": self.rope_base, "qk_scale": self.qk_scale, "logit_softcap": self.logit_softcap}

    def window_sizes(self) -> list[int]:
        """Keys each layer attends back to (nanochat's rule: the window is `left`, keys row-left..row)."""
        short = -(-self.sequence_len // 4 // 128) * 128
        sizes = [
            self.sequence_len if self.window_pattern[i % len(self.window_pattern)] == "L" else short
            for i in range(self.n_layer)
        ]
        sizes[-1] = self.sequence_len
        return sizes

    def __post_init__(self):
        if not self.window_pattern or set(self.window_pattern.upper()) - {"S", "L"}:
            raise ValueError(f"window_pattern {self.window_pattern!r} must be S and L characters")
        self.window_pattern = self.window_pattern.upper()
        if not (self.rope_base > 1 and self.qk_scale > 0 and self.logit_softcap > 0):
            raise ValueError(f"rope_base, qk_scale and logit_softcap must be positive: {self.knobs()}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not a multiple of n_head {self.n_head}")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head {self.n_head} is not a multiple of n_kv_head {self.n_kv_head}")


def norm(x: torch.Tensor) -> torch.Tensor:
    """RMSNorm without learnable parameters."""
    return F.rms_norm(x, (x.size(-1),))


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of the head dimension; x is (B, T, H, D), cos/sin (1, T, 1, D/2)."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class KVCache:
    """Keys and values of every layer for rows that advance in lockstep: (L, B, H_kv, T_max, D)."""

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        head_dim = config.n_embd // config.n_head
        shape = (config.n_layer, batch_size, config.n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.max_len = max_len
        self.pos = 0  # number of positions already stored

    def insert(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store (B, H_kv, T, D) at the current position; return all keys/values so far."""
        t0, t1 = self.pos, self.pos + k.size(2)
        if t1 > self.max_len:
            raise ValueError(f"KV cache full: {t1} positions > max_len {self.max_len}")
        self.k[layer, :, :, t0:t1] = k
        self.v[layer, :, :, t0:t1] = v
        return self.k[layer, :, :, :t1], self.v[layer, :, :, :t1]

    def advance(self, n: int) -> None:
        self.pos += n

    def clone(self) -> KVCache:
        other = KVCache.__new__(KVCache)
        other.k, other.v = self.k.clone(), self.v.clone()
        other.max_len, other.pos = self.max_len, self.pos
        return other


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.window = config.window_sizes()[layer_idx]
        self.qk_scale = config.qk_scale
        self.n_head, self.n_kv_head = config.n_head, config.n_kv_head
        self.head_dim = config.n_embd // config.n_head
        self.c_q = nn.Linear(config.n_embd, self.n_head * self.head_dim, bias=False)
        self.c_k = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_v = nn.Linear(config.n_embd, self.n_kv_head * self.head_dim, bias=False)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, cos, sin, kv_cache: KVCache | None):
        B, T, _ = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_kv_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_kv_head, self.head_dim)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        q, k = norm(q) * self.qk_scale, norm(k) * self.qk_scale
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, H, T, D)
        past = 0
        if kv_cache is not None:
            past = kv_cache.pos
            k, v = kv_cache.insert(self.layer_idx, k.to(kv_cache.k.dtype), v.to(kv_cache.v.dtype))
            k, v = k.to(q.dtype), v.to(q.dtype)
        enable_gqa = self.n_head != self.n_kv_head
        Tk = k.size(2)
        if past == 0 and self.window >= T:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=enable_gqa)
        elif T == 1 and Tk <= self.window + 1:  # one new token sees everything cached
            y = F.scaled_dot_product_attention(q, k, v, enable_gqa=enable_gqa)
        else:  # query i (at past+i) sees keys past+i-window .. past+i, as nanochat's SDPA path
            row = torch.arange(past, past + T, device=q.device)[:, None]
            col = torch.arange(Tk, device=q.device)[None, :]
            mask = (col <= row) & (row - col <= self.window)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=enable_gqa)
        y = y.transpose(1, 2).contiguous().view(B, T, -1)
        return self.c_proj(y)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=False)

    def forward(self, x):
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.attn = CausalSelfAttention(config, layer_idx)
        self.mlp = MLP(config)

    def forward(self, x, cos, sin, kv_cache):
        x = x + self.attn(norm(x), cos, sin, kv_cache)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(config.vocab_size, config.n_embd),
                "h": nn.ModuleList([Block(config, i) for i in range(config.n_layer)]),
            }
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # rotary tables cover a generous multiple of the context; they are rebuilt, never saved
        self.rotary_len = config.sequence_len * 4
        cos, sin = self._rotary_tables(self.rotary_len)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def _rotary_tables(self, length: int, device=None):
        head_dim = self.config.n_embd // self.config.n_head
        inv_freq = 1.0 / (
            self.config.rope_base ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
        )
        freqs = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv_freq)
        return freqs.cos()[None, :, None, :], freqs.sin()[None, :, None, :]

    @torch.no_grad()
    def init_weights(self, seed: int | None = None) -> GPT:
        """nanochat's init: unit-normal embedding, tiny head, uniform block inputs, zero output projections."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        n = self.config.n_embd
        bound = math.sqrt(3.0) / math.sqrt(n)

        def fill_(t, fn):  # sample on CPU so a seed gives the same weights on every device
            t.copy_(fn(torch.empty(t.shape)))

        fill_(self.transformer.wte.weight, lambda t: t.normal_(0.0, 1.0, generator=gen))
        fill_(self.lm_head.weight, lambda t: t.normal_(0.0, 0.001, generator=gen))
        for block in self.transformer.h:
            for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                fill_(lin.weight, lambda t: t.uniform_(-bound, bound, generator=gen))
            block.attn.c_proj.weight.zero_()
            block.mlp.c_proj.weight.zero_()
        cos, sin = self._rotary_tables(self.rotary_len, device=self.lm_head.weight.device)
        self.cos.copy_(cos)
        self.sin.copy_(sin)
        return self

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        """nanochat's estimate: forward+backward FLOPs per token at the full sequence_len (6N for the
        matmuls, 12*h*q*window per layer for attention). An upper bound for short notebooks: MFU
        uses `train_flops` at the real lengths."""
        return self.train_flops([self.config.sequence_len]) / self.config.sequence_len

    def train_flops(self, lengths) -> float:
        """Forward+backward FLOPs of one batch of notebooks of these real (unpadded) lengths: 6 per
        matmul parameter per real token, plus nanochat's attention term with each token attending over
        min(its notebook's length, the layer's window) instead of the padded or configured length."""
        c = self.config
        n_matmul = sum(p.numel() for name, p in self.named_parameters() if "wte" not in name)
        h, q = c.n_head, c.n_embd // c.n_head
        tokens = sum(lengths)
        attn = sum(12 * h * q * n * min(n, w) for n in lengths for w in c.window_sizes())
        return 6 * n_matmul * tokens + attn

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        loss_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        reduction: str = "mean",
    ):
        """idx (B, T) token ids. With targets: the cross-entropy (masked where loss_mask == 0);
        otherwise the logits (B, T, V) in float32. With a kv_cache the tokens continue the cached prefix."""
        B, T = idx.shape
        t0 = kv_cache.pos if kv_cache is not None else 0
        if t0 + T > self.rotary_len:
            raise ValueError(f"sequence of {t0 + T} tokens exceeds the rotary table ({self.rotary_len})")
        cos, sin = self.cos[:, t0 : t0 + T], self.sin[:, t0 : t0 + T]
        x = norm(self.transformer.wte(idx))
        for block in self.transformer.h:
            x = block(x, cos, sin, kv_cache)
        if kv_cache is not None:
            kv_cache.advance(T)
        x = norm(x)
        logits = self.lm_head(x).float()
        cap = self.config.logit_softcap
        logits = cap * torch.tanh(logits / cap)
        if targets is None:
            return logits
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), reduction="none")
        if loss_mask is None:
            loss_mask = torch.ones_like(targets, dtype=logits.dtype)
        loss_mask = loss_mask.reshape(-1).to(logits.dtype)
        if reduction == "none":
            return loss * loss_mask
        if reduction == "sum":
            return (loss * loss_mask).sum()
        return (loss * loss_mask).sum() / loss_mask.sum().clamp(min=1.0)
