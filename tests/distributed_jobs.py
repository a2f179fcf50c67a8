"""Runs a list of training jobs in every process of a torchrun launch (tests/test_distributed.py).

    python -m torch.distributed.run --nproc_per_node 2 tests/distributed_jobs.py jobs.json

The script starts the gloo process group itself, once, so that ``nlbook.train.train`` joins a
group it did not start (and leaves it open) and several runs share one launch. Each job is
``{"config": {...TrainConfig...}, "resume": bool, "stop_at_step": int | None,
"copy_to": path | None}``; ``copy_to`` keeps a copy of the job's checkpoint (rank 0).
"""

from __future__ import annotations

import json
import shutil
import sys

import torch
import torch.distributed as dist

from nlbook.train import TrainConfig, train


def main(path: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        for job in json.loads(open(path, encoding="utf-8").read()):
            config = TrainConfig(**job["config"])
            train(config, resume=job.get("resume", False), stop_at_step=job.get("stop_at_step"),
                  progress=False, log=None)
            assert dist.is_initialized(), "train() closed a process group it did not start"
            if job.get("copy_to") and dist.get_rank() == 0:
                shutil.copyfile(config.checkpoint, job["copy_to"])
            dist.barrier()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
