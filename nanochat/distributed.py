"""Many processes, one model: torchrun's environment, DDP, and the checks that keep ranks honest.

`torchrun --standalone --nproc_per_node=N -m loopylab.nanochat.train ...` starts N processes with
RANK, LOCAL_RANK and WORLD_SIZE set; each joins the process group (NCCL on CUDA, gloo on CPU), takes
its slice of every global batch, and DDP averages the gradients. Without those variables everything
here is a no-op and training runs in one process as before.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """What torchrun set (one process, rank 0, when nothing is set)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes; on CUDA each process takes the GPU of its local rank."""
    info = env_info()
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def current() -> DistInfo:
    """The process group already joined (one process when there is none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), env_info().local_rank)
    return DistInfo()


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Sum floats over the ranks (unchanged in one process)."""
    if not current().enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def broadcast_object(obj, src: int = 0):
    """rank `src`'s object on every rank (e.g. a tokenizer trained once)."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every parameter's bytes: equal on two ranks exactly when their weights are identical."""
    h = hashlib.sha256()
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def ranks_identical(model: torch.nn.Module) -> bool:
    """Whether every rank holds bitwise the same weights (True in one process)."""
    if not current().enabled:
        return True
    digests: list = [None] * current().world
    dist.all_gather_object(digests, weights_digest(model))
    return len(set(digests)) == 1
