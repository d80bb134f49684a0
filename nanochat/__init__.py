"""The policy: a small GPT (karpathy/nanochat's recipe) that reads the lab notebook and writes its next
hypothesis, experiment or conclusion.

- `tokenizer`: the notebook BPE, with one special token per section marker of `loopylab.world.notebook`;
- `gpt`, `optim`, `train`, `checkpoint`: the model, Muon + AdamW, the training loop and its presets, and
  checkpoints in nanochat's on-disk layout (the shipped model is in `nanochat/checkpoints/`);
- `data`: training notebooks written by the lab's `eig` expert, as JSONL shards and batches;
- `engine`: KV-cache decoding constrained so that every section parses and every experiment is in the
  lab's grid;
- `agent`, `node`: the lab's agent interface backed by the model, in process (`nanochat`) or over the bus
  (`nanochat-remote`, served by the policy node), both offered through the `loopylab.agents` entry points;
- `cli`: `loopylab policy ...` (make data, train, sample, evaluate), through the `loopylab.cli` entry points.

The top of the house: nanochat may import the lab and everything below; nothing imports nanochat.
"""
