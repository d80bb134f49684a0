"""The architecture block of a checkpoint's meta: every knob that changes the model's function.

nanochat's own meta carries only `model_config` (sizes and the window pattern); the rotary base, the
QK scale and the logit softcap live in its code and have changed between its revisions with the same
tensor names (rope base 10k -> 100k, QK scale 1 -> 1.15 -> 1.2, softcap 15 -> 20 -> 15), so a loader that
checks names and shapes can compute a different function without a word. Our checkpoints therefore
write `meta["architecture"]`: the numbers this GPT implements for any value (rope_base, qk_scale,
logit_softcap, vocab padding) and the structural choices it implements one way only. Loading refuses,
in one line, a block that is missing, names a knob this loader does not know, or asks for a structure
it does not implement.
"""

from __future__ import annotations

from loopylab.nanochat.gpt import NANOCHAT_CONFIG_KEYS, GPTConfig

ARCH_KEY = "architecture"

# the one way this GPT implements each structural choice (nanochat's core without its newer extras)
FIXED = {
    "family": "nanochat",
    "norm": "rmsnorm_no_weight",  # also after the embedding and before the head
    "qk_norm": "after_rotary",
    "rotary": "nanochat",  # halves (x1, x2) rotated by -theta, as nanochat's apply_rotary_emb
    "mlp": "relu2",
    "bias": False,
    "tied_embeddings": False,
    # nanochat's extras (value embeddings, smear, backout, per-layer residual lambdas): absent here; an
    # import keeps a nanochat checkpoint only when they hold their neutral values
    "value_embeds": False,
    "smear": False,
    "backout": False,
    "resid_lambdas": False,
}
FREE = ("rope_base", "qk_scale", "logit_softcap", "vocab_padded_to")


class ArchitectureError(ValueError):
    """A meta whose knobs this GPT does not implement (it would compute a different function)."""


def architecture(config: GPTConfig, vocab_padded_to: int = 1) -> dict:
    return {**FIXED, **config.knobs(), "vocab_padded_to": vocab_padded_to}


def config_from_meta(meta: dict, where: str = "meta") -> tuple[GPTConfig, int]:
    """(GPTConfig, vocab_padded_to) from a meta's model_config and architecture block; ArchitectureError
    in one line for anything this GPT would not compute faithfully."""
    arch = meta.get(ARCH_KEY)
    if not isinstance(arch, dict):
        raise ArchitectureError(
            f"{where} has no '{ARCH_KEY}' block: its rope base, QK scale and softcap are unknown, and a guess "
            f"could compute a different function (write one, or import nanochat checkpoints with "
            f"`loopylab policy import --nanochat`)"
        )
    unknown = sorted(set(arch) - set(FIXED) - set(FREE))
    if unknown:
        raise ArchitectureError(f"{where}: knob(s) {', '.join(unknown)} unknown to this loader; refusing")
    for key, want in FIXED.items():
        if key in arch and arch[key] != want:
            raise ArchitectureError(
                f"{where}: {key}={arch[key]!r} is not implemented (this GPT implements {want!r}); refusing"
            )
    missing = [k for k in (*FIXED, *FREE) if k not in arch]
    if missing:
        raise ArchitectureError(f"{where}: '{ARCH_KEY}' lacks {', '.join(missing)}; refusing to assume them")
    mc = meta.get("model_config")
    if not isinstance(mc, dict):
        raise ArchitectureError(f"{where} has no model_config")
    extra = sorted(set(mc) - set(NANOCHAT_CONFIG_KEYS))
    if extra:
        raise ArchitectureError(f"{where}: model_config field(s) {', '.join(extra)} unknown; refusing")
    pad = arch["vocab_padded_to"]
    if not isinstance(pad, int) or pad < 1:
        raise ArchitectureError(f"{where}: vocab_padded_to {pad!r} must be a positive integer")
    try:
        config = GPTConfig(
            **{**mc, "window_pattern": mc.get("window_pattern", "L")},
            rope_base=float(arch["rope_base"]),
            qk_scale=float(arch["qk_scale"]),
            logit_softcap=float(arch["logit_softcap"]),
        )
    except (TypeError, ValueError) as e:
        raise ArchitectureError(f"{where}: bad model_config or knobs: {e}") from e
    return config, pad


def padded(vocab_size: int, multiple: int) -> int:
    return -(-vocab_size // multiple) * multiple
