"""Optimizers and the learning-rate schedule.

nanochat's split: Muon (momentum, then an approximate orthogonalisation of the update by a quintic
Newton-Schulz iteration) for the 2-D matrices inside the transformer blocks, AdamW for the embedding,
the head and any scalars. The schedule warms up linearly, holds, then decays linearly to a floor over
the final `warmdown` fraction of training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

NS_COEFFS = (3.4445, -4.7750, 2.0315)  # quintic Newton-Schulz coefficients from the Muon reference


def orthogonalize(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """Approximate U V^T of g = U S V^T. bf16 on CUDA (fast, accurate enough), float32 on CPU."""
    a, b, c = NS_COEFFS
    x = g.bfloat16() if g.is_cuda else g.float()
    transposed = x.size(-2) > x.size(-1)
    if transposed:
        x = x.mT
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + 1e-7)
    for _ in range(steps):
        A = x @ x.mT
        B = b * A + c * A @ A
        x = a * x + B @ x
    if transposed:
        x = x.mT
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Momentum + orthogonalised updates for 2-D weight matrices, with decoupled weight decay."""

    def __init__(
        self,
        params,
        lr: float = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        weight_decay: float = 0.0,
    ):
        super().__init__(
            params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, weight_decay=weight_decay)
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            # matrices of one shape are orthogonalised together: a few batched matmuls instead of
            # dozens of small ones (on a GPU the small ones are all launch overhead)
            by_shape: dict[tuple, list] = {}
            for p in group["params"]:
                if p.grad is not None:
                    by_shape.setdefault(tuple(p.shape), []).append(p)
            for shape, params in by_shape.items():
                updates = []
                for p in params:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p.grad)
                    buf = state["momentum_buffer"]
                    buf.lerp_(p.grad, 1 - group["momentum"])
                    updates.append(p.grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf)
                ortho = orthogonalize(torch.stack(updates), group["ns_steps"])
                scale = max(1.0, shape[-2] / shape[-1]) ** 0.5  # keep tall matrices' RMS update equal
                for p, u in zip(params, ortho.unbind(0)):
                    if group["weight_decay"]:
                        p.mul_(1 - group["lr"] * group["weight_decay"])
                    p.add_(u, alpha=-group["lr"] * scale)


class MuonAdamW:
    """One object holding both optimizers, so the trainer steps, schedules and saves them together."""

    def __init__(
        self,
        model: torch.nn.Module,
        matrix_lr: float = 0.02,
        embedding_lr: float = 0.2,
        unembedding_lr: float = 0.004,
        scalar_lr: float = 0.02,
        weight_decay: float = 0.0,
        adam_betas: tuple[float, float] = (0.8, 0.95),
    ):
        matrices, embeddings, head, scalars = [], [], [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if "wte" in name:
                embeddings.append(p)
            elif "lm_head" in name:
                head.append(p)
            elif p.ndim == 2:
                matrices.append(p)
            else:
                scalars.append(p)
        # AdamW learning rates scale as 1/sqrt(width), tuned by nanochat at width 768
        dim_scale = (model.config.n_embd / 768) ** -0.5
        adam_groups = [
            dict(params=embeddings, lr=embedding_lr * dim_scale),
            dict(params=head, lr=unembedding_lr * dim_scale),
        ]
        if scalars:
            adam_groups.append(dict(params=scalars, lr=scalar_lr))
        fused = next(model.parameters()).is_cuda
        self.adamw = torch.optim.AdamW(adam_groups, betas=adam_betas, eps=1e-10, weight_decay=0.0, fused=fused)
        self.muon = Muon(matrices, lr=matrix_lr, momentum=0.95, weight_decay=weight_decay)
        self.optimizers = [self.adamw, self.muon]
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["initial_lr"] = group["lr"]

    def set_lr_multiplier(self, mult: float) -> None:
        for opt in self.optimizers:
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * mult

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def zero_grad(self) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.adamw.load_state_dict(state["adamw"])
        self.muon.load_state_dict(state["muon"])


@dataclass
class Schedule:
    """Linear warmup for `warmup` steps, flat, then linear warmdown over the last `warmdown` fraction."""

    total_steps: int
    warmup: int = 20
    warmdown: float = 0.65
    final_frac: float = 0.05

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        decay_start = self.total_steps * (1 - self.warmdown)
        if step < decay_start:
            return 1.0
        progress = (step - decay_start) / max(1.0, self.total_steps - decay_start)
        return max(self.final_frac, 1.0 - progress * (1 - self.final_frac))
