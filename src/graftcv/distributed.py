"""Several processes, one run: the world a run executes in, its launch through Lightning, and the few collectives.

graftcv never starts processes itself. `graftcv train --devices N` asks Lightning to launch them: with `ddp`,
Lightning's subprocess launcher re-runs the same command once per extra local rank (the children find LOCAL_RANK
set and join); with `ddp_spawn`, `torch.multiprocessing` spawns the ranks from Python (the only way from a
notebook). Under torchrun or SLURM every rank already runs the whole command; the world comes from their
environment variables. Rank 0 decides and writes; the others train beside it and return.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from graftcv.errors import GraftcvError

T = TypeVar("T")
_LAUNCHED: dict[str, Any] = {}  # the Fabric that launched this process's world, kept to stop the children


@dataclass(frozen=True)
class World:
    """Where a run executes: processes per machine (`devices`), machines, and whether a launcher outside
    graftcv (torchrun, SLURM) already started every rank."""

    devices: int | str
    num_nodes: int
    strategy: str
    accelerator: str
    external: bool

    @property
    def size(self) -> int:
        return (self.devices if isinstance(self.devices, int) else 1) * self.num_nodes


def _env_int(*names: str) -> int | None:
    for name in names:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return None


def external_world() -> tuple[int, int] | None:
    """(processes per machine, machines) when torchrun or SLURM started this process as one of several."""
    if "TORCHELASTIC_RUN_ID" in os.environ:
        world, local = _env_int("WORLD_SIZE"), _env_int("LOCAL_WORLD_SIZE")
        if world and local and world > 1:
            return local, max(1, world // local)
    from lightning.fabric.plugins.environments import SLURMEnvironment

    tasks = _env_int("SLURM_NTASKS")
    if tasks and tasks > 1 and SLURMEnvironment.detect():
        nodes = _env_int("SLURM_NNODES", "SLURM_JOB_NUM_NODES") or 1
        return max(1, tasks // nodes), nodes
    return None


def world_of(config) -> World:
    """The world a `TrainConfig` asks for; an outside launcher's environment sets it where the config does not."""
    external = external_world()
    devices, nodes = config.devices, config.num_nodes
    if external is not None:
        per_node, machines = external
        if devices not in ("auto", per_node) or nodes not in (1, machines):
            raise GraftcvError(
                f"The launcher started {per_node} process(es) on each of {machines} machine(s), but the run asks for "
                f"--devices {devices} --num-nodes {nodes}: drop them or make them match."
            )
        devices, nodes = per_node, machines
    return World(devices, nodes, config.strategy_ddp, config.accelerator, external is not None)


def initialized() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    if not initialized():
        return 0
    import torch.distributed as dist

    return dist.get_rank()


def size() -> int:
    if not initialized():
        return 1
    import torch.distributed as dist

    return dist.get_world_size()


def is_main() -> bool:
    return rank() == 0


def _fabric(world: World):
    from lightning.fabric import Fabric

    accelerator = world.accelerator
    return Fabric(accelerator=accelerator, devices=world.devices, num_nodes=world.num_nodes, strategy=world.strategy)


def launch(world: World) -> None:
    """Join (or, on the first process of a `ddp` run, start) the ranks of `world` and its process group.
    Called before the run touches anything, because with `ddp` every extra rank re-runs the command from its start."""
    if world.size <= 1 or initialized():
        return
    fabric = _fabric(world)
    with _quiet():
        fabric.launch()
    _LAUNCHED.update(fabric=fabric, world=world)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Lightning's banners for every rank joining: the run's own lines say what matters."""
    loggers = [logging.getLogger(name) for name in ("lightning.fabric", "lightning.pytorch")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def current() -> World | None:
    """The world this process was launched into, None on one process."""
    return _LAUNCHED.get("world") if initialized() else None


def spawn(world: World, function: Callable[..., T], *args: Any) -> T:
    """`ddp_spawn`: run `function(*args)` in `world.size` new processes; the result is rank 0's."""
    fabric = _fabric(world)
    return fabric.launch(_in_rank, _Sealed((world, function, args)))


class _Sealed:
    """The arguments of spawned ranks, pickled as they are: Lightning walks dataclasses and tuples it is handed
    (to unshare their tensors) and refuses frozen ones."""

    def __init__(self, content: Any) -> None:
        self.content = content


def _in_rank(fabric, sealed: _Sealed) -> Any:
    world, function, args = sealed.content
    # what Lightning's environment reads: the Trainers of this rank then join its process group, not launch anew
    os.environ["LOCAL_RANK"], os.environ["NODE_RANK"] = str(fabric.local_rank), str(fabric.node_rank)
    _LAUNCHED.update(fabric=fabric, world=world)
    return function(*args)


def stop_children() -> None:
    """Rank 0 failed: stop the ranks this process launched, which would otherwise wait for it in a collective."""
    fabric = _LAUNCHED.get("fabric")
    launcher = getattr(getattr(fabric, "_strategy", None), "launcher", None)
    for process in getattr(launcher, "procs", []):
        if process.poll() is None:
            process.kill()


def broadcast(value: T) -> T:
    """Rank 0's `value` on every rank."""
    if size() <= 1:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(value: T) -> list[T]:
    """Every rank's `value`, in rank order, on every rank."""
    if size() <= 1:
        return [value]
    import torch.distributed as dist

    values: list[Any] = [None] * size()
    dist.all_gather_object(values, value)
    return values


def decided(choose: Callable[[], T]) -> T:
    """`choose()` run on rank 0 only and its result (or its GraftcvError, raised on every rank) on all ranks, so
    that a refusal by rank 0 never leaves the others waiting in a collective."""
    if size() <= 1:
        return choose()
    outcome: tuple[bool, Any] = (True, None)
    if is_main():
        try:
            outcome = (True, choose())
        except GraftcvError as error:
            outcome = (False, str(error))
    ok, value = broadcast(outcome)
    if not ok:
        raise GraftcvError(value)
    return value


def barrier() -> None:
    if size() > 1:
        import torch.distributed as dist

        dist.barrier()


def block(n: int, index: int | None = None, world: int | None = None) -> range:
    """The contiguous share of `n` items for one rank: sizes differ by at most one, ranks in order, nothing twice
    (unlike DistributedSampler, which pads with repeats: fine for training, wrong for metrics)."""
    index = rank() if index is None else index
    world = size() if world is None else world
    return range(n * index // world, n * (index + 1) // world)
