"""Where this process stands under ``torchrun``: :class:`Dist` (rank, world size, the rank's device, gathering
per-rank results on rank 0). ``hrnet-fast predict`` shards its images with it; torch is imported on use."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

__all__ = ["Dist"]


@dataclass
class Dist:
    """Where this process stands under ``torchrun`` (rank 0 of 1 without it)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> "Dist":
        """From torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (0, 1, 0 when unset)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    def device(self, requested: str):
        """The device of this rank: ``cuda:LOCAL_RANK`` (modulo the GPUs) for auto/cuda under torchrun with
        GPUs, else ``requested`` resolved by :func:`hrnet_fast._device.resolve_device` (which raises
        ``ValueError``/``RuntimeError`` for a device that is not here)."""
        import torch

        from ._device import resolve_device

        if self.world > 1 and requested in ("auto", "cuda") and torch.cuda.is_available():
            return torch.device("cuda", self.local_rank % torch.cuda.device_count())
        return resolve_device(requested)

    def init(self, device) -> None:
        """Join the process group (nccl on CUDA, gloo on the CPU); nothing without torchrun."""
        if self.world <= 1:
            return
        import torch
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def gather(self, items: list) -> Optional[list]:
        """Every rank's ``items`` on rank 0 (one list, concatenated), None elsewhere."""
        if self.world <= 1:
            return items
        import torch.distributed as dist

        parts = [None] * self.world if self.rank == 0 else None
        dist.gather_object(items, parts, dst=0)
        return [x for p in parts for x in p] if self.rank == 0 else None

    def close(self) -> None:
        """Leave the process group (if this process joined one)."""
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
