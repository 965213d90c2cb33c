"""Many processes through ``torchrun``, with the same code path as one process.

``torchrun`` starts one process per GPU (or CPU worker) and tells each its ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in environment variables; :func:`init_distributed` reads them
and joins the process group (NCCL on GPUs, gloo on CPUs). Without them it does nothing, and
every helper below answers as a world of one, so the :class:`~segedu.train.Trainer` has a
single code path:

* every process sees a different shard of each batch (``DistributedSampler``, re-shuffled per
  epoch with ``set_epoch``); :class:`ResumableSampler` can also start mid-epoch (exact resume);
* ``DistributedDataParallel`` averages the gradients, so with a per-process batch ``B`` on
  ``P`` processes one step equals a step on a batch of ``P x B`` (BatchNorm aside: each process
  normalises its own ``B`` images unless ``sync_bn=True`` converts it to ``SyncBatchNorm``,
  which needs GPUs). One more difference: the loss is a mean over each process's labelled
  pixels and DDP averages those means, so when processes have different numbers of ignored
  (255) pixels a pixel weighs slightly differently than in one big batch;
* validation: each process counts a confusion matrix on its shard; :func:`all_reduce_sum` adds
  them, so the metrics are those of the whole validation set;
* only rank 0 writes checkpoints, CSVs and plots, and shows progress bars.

Run it::

    # one machine, 4 GPUs
    torchrun --standalone --nproc_per_node 4 -m segedu.cli train --model deeplabv3 ...
    # two machines with 8 GPUs each: the same command on both, pointing at one rendezvous host
    torchrun --nnodes 2 --nproc_per_node 8 --rdzv_backend c10d \\
             --rdzv_endpoint HOST:29400 --rdzv_id myjob -m segedu.cli train ...

``--batch-size`` is per process: the effective batch is ``nodes x nproc_per_node x batch``.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

__all__ = ["init_distributed", "rank", "world_size", "is_main", "all_reduce_sum",
           "ResumableSampler", "shard_indices"]


def init_distributed(backend: str | None = None) -> torch.device | None:
    """Join the process group if started by ``torchrun`` (``WORLD_SIZE`` > 1).

    Returns this process's device (``cuda:LOCAL_RANK`` with NCCL, else ``cpu``), or ``None``
    when not distributed (the caller picks the device as usual).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    use_cuda = torch.cuda.is_available() and backend != "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if use_cuda else "gloo"))
    if use_cuda:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes, in place (a no-op in a world of one)."""
    if world_size() > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def shard_indices(length: int) -> range:
    """This process's share of ``range(length)`` for evaluation: every ``world``-th index, with
    no padding (``DistributedSampler`` would repeat samples to even the shards out, and the
    repeated images would count twice in the metrics)."""
    return range(rank(), length, world_size())


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled per epoch from ``seed + epoch``) that can skip the first
    ``start`` samples of this epoch's shard: how a resumed run continues mid-epoch exactly
    where the interrupted one stopped. In a world of one it is a seeded shuffle."""

    def __init__(self, dataset: Dataset, seed: int = 0) -> None:
        super().__init__(dataset, num_replicas=world_size(), rank=rank(), shuffle=True,
                         seed=seed, drop_last=False)
        self.start = 0

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start
