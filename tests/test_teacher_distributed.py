"""The cross-encoder teacher's loop on two Ray Train workers (gloo on CPUs): the same weights as one process with
the same global batch, and a worker killed with -9 mid-run resumed to the same end."""

import json
import os
import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest
from safetensors.torch import load_file

ray = pytest.importorskip("ray")
pytest.importorskip("ray.train")
pytestmark = [pytest.mark.integration,
              pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.filterwarnings("ignore::FutureWarning")]

from searchrel.data.dataset import load_dataset  # noqa: E402
from searchrel.teacher.distributed import train_on_ray  # noqa: E402
from searchrel.teacher.train import train  # noqa: E402
from test_teacher import _config, _dataset  # noqa: E402


def _weights(run):
    return load_file(str(run / "model.safetensors"))


def _deterministic(tiny_bert, tmp_path, epochs: int):
    """A saved tiny dataset and a CPU fp32 config without dropout anywhere: one process and two workers take the
    same steps (random masks would differ between them)."""
    _dataset().save(tmp_path / "ds")
    cfg = _config(_without_dropout(tiny_bert, tmp_path / "bert"), epochs=epochs, batch_size=2, patience=1000)
    return cfg.model_copy(update={"device": "cpu", "bf16": False,
                                  "teacher": cfg.teacher.model_copy(update={"dropout": 0.0})})


def _max_difference(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k].float().numpy() - b[k].float().numpy()).max()) for k in a)


def _without_dropout(backbone, out):
    """The tiny backbone with its dropout off: random masks would differ between one process and two workers."""
    shutil.copytree(backbone, out)
    config = json.loads((out / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (out / "config.json").write_text(json.dumps(config))
    return out


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_two_workers_reach_the_weights_of_one_process(tiny_bert, tmp_path, local_ray, fsdp):
    cfg = _deterministic(tiny_bert, tmp_path, epochs=4)
    alone = train(load_dataset(tmp_path / "ds"), tmp_path / "alone", cfg)
    two = train_on_ray(tmp_path / "ds", tmp_path / "two", cfg.model_copy(update={"fsdp": fsdp}), workers=2)
    a, b = _weights(alone), _weights(two)
    assert a.keys() == b.keys()
    worst = _max_difference(a, b)
    print(f"two workers against one process: max |weight difference| {worst:.1e}")
    assert worst < 1e-4, worst  # the same steps; only the order of the gradient sums differs
    ra, rb = (json.loads((r / "train.json").read_text()) for r in (alone, two))
    assert ra["steps"] == rb["steps"] and ra["best"]["step"] == rb["best"]["step"]
    assert (ra["parallel"], rb["parallel"]) == ("none", "fsdp" if fsdp else "ddp")
    moved = max(float(np.abs(a[k].float().numpy()).max()) for k in a if "head" in k)
    assert moved > 0


def test_a_batch_smaller_than_the_workers_is_refused(tiny_bert, tmp_path):
    with pytest.raises(ValueError, match="cannot be split over 4 workers"):
        train_on_ray(tmp_path / "ds", tmp_path / "run", _config(tiny_bert, batch_size=2), workers=4)


def _train_workers() -> list[int]:
    """PIDs of Ray Train's worker processes (their process title names the actor)."""
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:] if "RayTrainWorker" in line]


@pytest.mark.parametrize("fsdp", [False, True], ids=["ddp", "fsdp"])
def test_a_worker_killed_mid_run_resumes_to_the_same_end(tiny_bert, tmp_path, local_ray, fsdp):
    cfg = _deterministic(tiny_bert, tmp_path, epochs=8)
    reference = train(load_dataset(tmp_path / "ds"), tmp_path / "alone", cfg)
    cfg = cfg.model_copy(update={"fsdp": fsdp})  # sharded: the checkpoint gathers whole states and re-shards them
    run = tmp_path / "killed"
    killed, finished = [], threading.Event()

    def kill_one_worker():  # kill -9 a worker once a few checkpoints exist (however slow the machine is today)
        progress = run / "checkpoint" / "progress.json"
        while not finished.is_set():
            try:
                step = json.loads(progress.read_text())["global_step"] if progress.exists() else 0
            except (ValueError, OSError):
                step = 0
            workers = _train_workers()
            if step >= 6 and workers:
                os.kill(workers[-1], signal.SIGKILL)
                killed.append(step)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill_one_worker)
    watcher.start()
    try:
        resumed = train_on_ray(tmp_path / "ds", run, cfg, workers=2, max_failures=2)
    finally:
        finished.set()
        watcher.join()
    assert killed, "no worker was killed: the run ended too soon"
    assert killed[0] < json.loads((resumed / "train.json").read_text())["steps"]  # killed mid-run, then resumed
    a, b = _weights(reference), _weights(resumed)
    worst = _max_difference(a, b)
    print(f"killed at step {killed[0]}, resumed: max |weight difference| to one process {worst:.1e}")
    assert worst < 1e-4, worst
    ra, rb = (json.loads((r / "train.json").read_text()) for r in (reference, resumed))
    assert ra["steps"] == rb["steps"] and ra["best"]["step"] == rb["best"]["step"]
    assert rb["parallel"] == ("fsdp" if fsdp else "ddp")


def test_the_cli_and_the_pipeline_config_train_on_workers(tiny_bert, tmp_path, local_ray):
    from typer.testing import CliRunner

    from searchrel.cli import app
    from searchrel.teacher.config import TrainConfig

    ds = _dataset()
    ds.save(tmp_path / "ds")
    run = CliRunner().invoke(app, ["teacher", "train", str(tmp_path / "ds"), "--out", str(tmp_path / "t"),
                                   "--recipe", "cross_encoder", "--backbone", str(tiny_bert), "--fields",
                                   "title,image_caption", "--epochs", "1", "--batch-size", "4", "--max-length", "32",
                                   "--workers", "2"])
    assert run.exit_code == 0, run.output
    record = json.loads((tmp_path / "t" / "train.json").read_text())
    assert record["config"]["workers"] == 2 and (tmp_path / "t" / "model.safetensors").exists()
    # a pipeline config's [teacher.train] section takes the same keys; its teacher stage calls the same entry point
    from searchrel.pipeline.config import load_config

    cfg = load_config("demo", ["teacher.train.workers=2", "teacher.train.ray_address=ray://head:10001",
                               "teacher.train.gpus_per_worker=1", "teacher.train.fsdp=true"]).train_config()
    assert (cfg.workers, cfg.ray_address, cfg.gpus_per_worker, cfg.fsdp) == (2, "ray://head:10001", 1.0, True)
    with pytest.raises(ValueError):
        TrainConfig(workers=0)
    alone = CliRunner().invoke(app, ["teacher", "train", str(tmp_path / "ds"), "--out", str(tmp_path / "f"),
                                     "--recipe", "cross_encoder", "--backbone", str(tiny_bert), "--fsdp"])
    assert alone.exit_code != 0 and "--workers 2 or more" in alone.output
