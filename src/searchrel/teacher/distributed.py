"""The cross-encoder teacher's training loop on several workers: Ray Train's ``TorchTrainer`` runs
``teacher.train.train`` once per worker, data-parallel (DDP: gloo on CPUs, NCCL on GPUs).

Every worker loads the dataset, builds the same model from the same seed and walks the same batch order; each
global batch of ``batch_size`` pairs is split over the workers (``models.training.Parallel``) and their gradients
are averaged, so a step is the single-process step on the whole batch and the run ends at the same weights up to
floating-point summation order (``tests/test_teacher_distributed.py``). Rank 0 validates, checkpoints into the run
directory and writes the finished teacher; the run directory must be on storage every worker sees (one machine,
or a shared file system on a cluster).

A worker that dies (kill -9, a lost node) fails the attempt; Ray Train starts the worker group again up to
``max_failures`` times, and every worker resumes from the run directory's last checkpoint — which is where an
uninterrupted run would have been, since batches come from a per-epoch seed and the RNG state is checkpointed.
"""

from __future__ import annotations

from pathlib import Path

from searchrel.data.dataset import load_dataset
from searchrel.models.training import Parallel
from searchrel.teacher.config import TrainConfig
from searchrel.teacher.train import train


def train_on_ray(dataset: Path, run: Path, cfg: TrainConfig, workers: int, resume: bool = False,
                 address: str | None = None, cpus_per_worker: int = 1, gpus_per_worker: float = 0,
                 max_failures: int = 2) -> Path:
    """Train the cross-encoder teacher of ``cfg`` on ``workers`` Ray Train workers into ``run``.

    ``address`` joins a running cluster (``ray start --head`` elsewhere; None starts or reuses a local Ray);
    ``gpus_per_worker`` > 0 trains on GPUs (NCCL), else on CPUs (gloo). Returns the finished teacher's directory."""
    import ray  # the ray extra: imported where a cluster is used
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    if cfg.batch_size < workers:
        raise ValueError(f"a batch of {cfg.batch_size} pairs cannot be split over {workers} workers: raise "
                         f"--batch-size or lower --workers")
    run, dataset = Path(run).resolve(), Path(dataset).resolve()
    if run.exists() and any(run.iterdir()) and not resume:
        raise FileExistsError(f"{run} is not empty: pass resume=True (--resume) to continue it, or choose another --out")
    run.mkdir(parents=True, exist_ok=True)
    gpu = gpus_per_worker > 0
    device_cfg = cfg.model_copy(update={"device": "cuda" if gpu else "cpu"})

    def loop(_config: dict) -> None:
        import ray.train
        import torch

        ctx = ray.train.get_context()
        if gpu:
            torch.cuda.set_device(ray.train.torch.get_device())
        # always resume: the first attempt finds no checkpoint and starts afresh, a restarted one continues
        train(load_dataset(dataset), run, device_cfg, resume=True,
              parallel=Parallel(ctx.get_world_rank(), ctx.get_world_size()))

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    trainer = TorchTrainer(
        loop, torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpu,
                                     resources_per_worker={"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpu
                                                                                      else {})}),
        run_config=RunConfig(name=run.name, storage_path=str(run.parent / ".ray-train"),
                             failure_config=FailureConfig(max_failures=max_failures)))
    trainer.fit()
    if not (run / "model.safetensors").exists():
        raise RuntimeError(f"the distributed run ended without a finished teacher in {run}: see the Ray logs")
    return run
