"""Plain-torch pieces of data-parallel training: the device, the process group torchrun sets
up (gloo on CPU, NCCL on GPU), DDP wrapping, each rank's share of the batches, and the few
collectives that keep every rank's loop in step (the clock, the dev evaluation).

One process is the degenerate case: `Ranks.single` has world 1 and every helper here is then
a no-op, so the training loop has one shape for both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from models.features import Batch

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in the job: its rank, how many there are, its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 evaluates, writes checkpoints and reports."""
        return self.rank == 0

    @classmethod
    def single(cls, device: str = "auto") -> Ranks:
        return cls(0, 1, pick_device(device))


def pick_device(name: str) -> torch.device:
    """`auto`: the GPU when torch sees one, else the CPU; `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("training.device is 'cuda' but torch sees no GPU here (use auto or cpu)")
    return torch.device(name)


def join_process_group(device: str) -> Ranks:
    """Join the process group torchrun describes in RANK/WORLD_SIZE/LOCAL_RANK/MASTER_*."""
    if "LOCAL_RANK" not in os.environ:
        raise RuntimeError("expected to run under torchrun (no LOCAL_RANK in the environment)")
    where = pick_device(device)
    if where.type == "cuda":
        local = int(os.environ["LOCAL_RANK"])
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"training.processes asks for a rank on GPU {local}, but torch sees "
                f"{torch.cuda.device_count()} GPU(s): one process per GPU (or device cpu)"
            )
        where = torch.device("cuda", local)
        torch.cuda.set_device(where)
    dist.init_process_group("nccl" if where.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), where)


def leave_process_group(ranks: Ranks) -> None:
    if ranks.world > 1 and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, ranks: Ranks) -> torch.nn.Module:
    """DDP over the ranks (it broadcasts rank 0's weights first); the model itself alone."""
    if ranks.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [ranks.device.index] if ranks.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def my_batches(batches: Sequence[T], ranks: Ranks) -> list[T]:
    """This rank's share of an epoch's batches: every world-th one, the same count on every
    rank (a rank with one step more would wait forever in its gradient all-reduce)."""
    usable = len(batches) // ranks.world * ranks.world
    return list(batches[ranks.rank : usable : ranks.world])


def agreed_max(value: float, ranks: Ranks) -> float:
    """The largest of every rank's value (the clock: all ranks stop at the same step)."""
    if ranks.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ranks.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def agreed_sum(value: float, ranks: Ranks) -> float:
    if ranks.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ranks.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t.item())


def main_value(value: float, ranks: Ranks) -> float:
    """Rank 0's value on every rank (its dev WER: only rank 0 evaluates)."""
    return agreed_sum(value if ranks.main else 0.0, ranks)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 mixed precision on a GPU; the CPU trains in fp32."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def batch_to(batch: Batch, device: torch.device) -> Batch:
    if device.type == "cpu":
        return batch
    return dataclasses.replace(
        batch,
        features=batch.features.to(device, non_blocking=True),
        feature_lengths=batch.feature_lengths.to(device),
        targets=batch.targets.to(device),
        target_lengths=batch.target_lengths.to(device),
    )


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights on the CPU, so a checkpoint made on a GPU loads anywhere."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 of every weight's bytes in key order: equal digests, identical weights."""
    h = hashlib.sha256()
    for key, value in _sorted(cpu_state(model)):
        h.update(key.encode())
        h.update(value.contiguous().numpy().tobytes())
    return h.hexdigest()


def _sorted(state: dict[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    yield from sorted(state.items())
