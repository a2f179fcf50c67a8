"""More than one process: a 2-process gloo run (torchrun, on the CPU, loopback only) computes what
one process computes with the same global batch, and its checkpoints resume exactly, in one
process or in two. Tiny models, a few steps; two torchrun launches for the whole file (one runs
the list of jobs in tests/distributed_jobs.py, one the command line)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nlbook
from nlbook.train import TrainConfig, load_checkpoint, set_up_run, train
from nlbook.train.distributed import World, check_batch_divides, describe_world, take_rows

TOLERANCE = 1e-5  # parameters after N steps, 2 processes against 1
STEPS, STOP = 8, 4

JOBS_SCRIPT = Path(__file__).with_name("distributed_jobs.py")


@pytest.fixture(scope="module")
def corpus_path(tmp_path_factory):
    generator = torch.Generator().manual_seed(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "café", "naïve", "über", "and"]
    picks = torch.randint(len(words), (900,), generator=generator).tolist()
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text(" ".join(words[i] for i in picks).replace("mat ", "mat.\n"), encoding="utf-8")
    return path


def transformer_values(corpus_path, checkpoint, **overrides) -> dict:
    values = dict(d_model=16, n_layers=1, n_heads=2, context_length=16, batch_size=4,
                  steps=STEPS, learning_rate=3e-3, min_learning_rate=3e-4, warmup_steps=3,
                  eval_interval=4, eval_batches=2, data=str(corpus_path),
                  checkpoint=str(checkpoint))
    values.update(overrides)
    return values


def hope_values(corpus_path, checkpoint, **overrides) -> dict:
    # Streams of 64 tokens: rows restart, staggered, during the run (and around STOP).
    return transformer_values(corpus_path, checkpoint, model="hope", carry_state=True,
                              stream_length=64,
                              model_options={"chunk_size_memory": 16, "chunk_size_others": 8,
                                             "cms_chunk_sizes": [32, 8],
                                             "cms_learning_rates": [0.0, 0.05]}, **overrides)


def run_here(values: dict, **kwargs):
    return train(TrainConfig(**values), progress=False, log=None, **kwargs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(arguments: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node N ...`` on 127.0.0.1 (gloo)."""
    environment = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1",
                       PYTHONPATH=os.pathsep.join([str(Path(nlbook.__file__).parents[1]),
                                                   os.environ.get("PYTHONPATH", "")]))
    if Path("/sys/class/net/lo").exists():
        environment["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
               str(processes), "--master_addr", "127.0.0.1", "--master_port",
               str(_free_port()), *arguments]
    done = subprocess.run(command, capture_output=True, text=True, env=environment,
                          timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def runs(corpus_path, tmp_path_factory):
    """One-process references, then one 2-process launch running every 2-process job."""
    folder = tmp_path_factory.mktemp("distributed")
    one = {"transformer": run_here(transformer_values(corpus_path, folder / "t1.pt")),
           "hope": run_here(hope_values(corpus_path, folder / "h1.pt"))}
    # A 1-process checkpoint at STOP, to be resumed by 2 processes, and one kept as it is.
    run_here(hope_values(corpus_path, folder / "h1-on-2.pt"), stop_at_step=STOP)
    run_here(hope_values(corpus_path, folder / f"h1-at-{STOP}.pt"), stop_at_step=STOP)
    jobs = []
    for name, values in (("t", transformer_values), ("h", hope_values)):
        straight = values(corpus_path, folder / f"{name}2.pt")
        interrupted = values(corpus_path, folder / f"{name}2-resumed.pt")
        jobs += [{"config": straight},
                 {"config": interrupted, "stop_at_step": STOP,
                  "copy_to": str(folder / f"{name}2-at-{STOP}.pt")},
                 {"config": interrupted, "resume": True}]
    jobs.append({"config": hope_values(corpus_path, folder / "h1-on-2.pt"), "resume": True})
    jobs.append({"config": transformer_values(corpus_path, folder / "t2-minutes.pt",
                                              steps=None, minutes=0.01, calibration_steps=3)})
    (folder / "jobs.json").write_text(json.dumps(jobs), encoding="utf-8")
    torchrun([str(JOBS_SCRIPT), str(folder / "jobs.json")])
    return folder, one


def assert_parameters_close(a: dict, b: dict, tolerance: float = TOLERANCE) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.allclose(a[name], b[name], rtol=0, atol=tolerance), \
            (name, float((a[name] - b[name]).abs().max()))


def assert_exactly_equal(a: dict, b: dict) -> None:
    assert a["history"] == b["history"] and a["step"] == b["step"]
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name


def assert_same_tree(a, b, tolerance: float) -> None:
    if torch.is_tensor(a):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=0, atol=tolerance)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            assert_same_tree(a[key], b[key], tolerance)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same_tree(x, y, tolerance)
    else:
        assert a == b


@pytest.mark.parametrize("name", ["transformer", "hope"])
def test_two_processes_equal_one_with_the_same_global_batch(runs, name):
    folder, one = runs
    two = load_checkpoint(folder / f"{name[0]}2.pt")
    assert two["world_size"] == 2 and load_checkpoint(folder / f"{name[0]}1.pt")["world_size"] == 1
    assert two["step"] == STEPS and two["config"]["batch_size"] == 4  # the global batch
    assert_parameters_close(two["model"], one[name].model.state_dict())
    assert two["history"]["train_steps"] == one[name].history["train_steps"]
    for key in ("train_loss", "val_loss"):
        assert two["history"][key] == pytest.approx(one[name].history[key], abs=TOLERANCE)


def test_two_processes_store_the_global_streams_and_carried_state(runs):
    """The checkpoint of 2 processes holds the whole batch's data state and carried rows,
    in row order: the same as one process's (mid-run: a finished run keeps no carried state)."""
    folder, _ = runs
    assert load_checkpoint(folder / "h2.pt")["carried_state"] is None
    two = load_checkpoint(folder / f"h2-at-{STOP}.pt")
    one = load_checkpoint(folder / f"h1-at-{STOP}.pt")
    assert torch.equal(two["streams"]["generator"], one["streams"]["generator"])
    assert_same_tree(two["streams"]["positions"], one["streams"]["positions"], 0)
    assert two["carried_state"]["batch"] == one["carried_state"]["batch"] == 4
    assert_same_tree(two["carried_state"], one["carried_state"], TOLERANCE)
    transformer = load_checkpoint(folder / "t2.pt")
    assert torch.equal(transformer["data_generator"],
                       load_checkpoint(folder / "t1.pt")["data_generator"])


@pytest.mark.parametrize("name", ["t", "h"])
def test_resume_of_two_processes_in_two_is_exact(runs, name):
    folder, _ = runs
    assert load_checkpoint(folder / f"{name}2-at-{STOP}.pt")["step"] == STOP
    assert_exactly_equal(load_checkpoint(folder / f"{name}2-resumed.pt"),
                         load_checkpoint(folder / f"{name}2.pt"))


@pytest.mark.parametrize("name", ["transformer", "hope"])
def test_resume_of_two_processes_in_one_continues_the_same_run(runs, name, tmp_path):
    folder, one = runs
    path = tmp_path / "resumed-in-one.pt"
    shutil.copyfile(folder / f"{name[0]}2-at-{STOP}.pt", path)
    values = (transformer_values if name == "transformer" else hope_values)(
        folder.parent, path)  # the stored configuration is used
    resumed = run_here(values, resume=True)
    two = load_checkpoint(folder / f"{name[0]}2.pt")
    assert resumed.step == STEPS and load_checkpoint(path)["world_size"] == 1
    assert_parameters_close(resumed.model.state_dict(), two["model"])
    assert_parameters_close(resumed.model.state_dict(), one[name].model.state_dict())
    assert resumed.history["train_loss"] == pytest.approx(two["history"]["train_loss"],
                                                          abs=TOLERANCE)


def test_resume_of_one_process_in_two_continues_the_same_run(runs):
    folder, one = runs
    resumed = load_checkpoint(folder / "h1-on-2.pt")
    assert resumed["world_size"] == 2 and resumed["step"] == STEPS
    assert_parameters_close(resumed["model"], one["hope"].model.state_dict())
    assert resumed["history"]["val_loss"] == pytest.approx(one["hope"].history["val_loss"],
                                                           abs=TOLERANCE)


def test_a_time_budget_ends_every_process_at_the_same_step(runs):
    """Rank 0's clock decides for all (a rank that stopped alone would hang the others)."""
    state = load_checkpoint(runs[0] / "t2-minutes.pt")
    assert state["world_size"] == 2 and state["step"] == state["total_steps"] >= 4
    assert state["history"]["val_steps"][-1] == state["step"]


def test_the_command_line_under_torchrun(corpus_path, tmp_path):
    """``torchrun --nproc_per_node 2 -m nlbook.train``: the first line names the world size,
    rank 0 writes one checkpoint, and the run equals one process's with the same batch."""
    from nlbook.train.cli import _config_from_args, _parser

    argv = ["--model", "hope", "--data", str(corpus_path), "--steps", "6", "--d-model", "16",
            "--n-layers", "1", "--n-heads", "2", "--context-length", "16", "--batch-size", "4",
            "--carry-state", "--stream-length", "64", "--eval-interval", "3",
            "--eval-batches", "2", "--model-option", "chunk_size_memory=16",
            "--model-option", "chunk_size_others=8", "--model-option", "cms_chunk_sizes=(32,8)",
            "--model-option", "cms_learning_rates=(0.0,0.05)", "--no-progress",
            "--no-baselines", "--checkpoint", str(tmp_path / "cli.pt"),
            "--figure", str(tmp_path / "loss.png")]
    done = torchrun(["-m", "nlbook.train", *argv])
    lines = done.stdout.splitlines()
    assert "world size 2" in lines[0] and "gloo" in lines[0], done.stdout
    assert sum("world size" in line for line in lines) == 1  # rank 0 only, once
    assert lines[1].startswith("data: ")
    assert (tmp_path / "loss.png").is_file() and "bits/char" in done.stdout
    two = load_checkpoint(tmp_path / "cli.pt")
    assert two["world_size"] == 2 and two["step"] == 6
    config = _config_from_args(_parser().parse_args(argv))
    config.checkpoint = None
    one = train(config, progress=False, log=None)
    assert_parameters_close(two["model"], one.model.state_dict())


# ----------------------------------------------------------------------------- no processes

def test_each_rank_owns_its_rows_of_the_global_batch():
    worlds = [World(rank, 2) for rank in range(2)]
    assert [world.rows(4) for world in worlds] == [slice(0, 2), slice(2, 4)]
    batch = torch.arange(8).view(4, 2)
    assert torch.equal(torch.cat([world.local(batch) for world in worlds]), batch)
    assert World().local(batch) is batch  # one process: the batch itself
    state = {"layers": [{"conv": torch.arange(12.0).view(4, 3), "position": 5, "pending": None}],
             "batch": 4}
    half = take_rows(state, slice(2, 4))
    assert torch.equal(half["layers"][0]["conv"], state["layers"][0]["conv"][2:])
    assert half["layers"][0]["position"] == 5 and half["batch"] == 4
    assert World().gather_rows(state, 4) is state


def test_a_world_size_that_does_not_divide_the_batch_is_refused(corpus_path):
    with pytest.raises(ValueError, match="10 rows cannot be shared equally by 4 processes"):
        check_batch_divides(10, 4)
    check_batch_divides(12, 4)
    config = TrainConfig(**transformer_values(corpus_path, "unused.pt", batch_size=3))
    with pytest.raises(ValueError, match=r"batch_size .*multiple of the number of processes"):
        set_up_run(config, world=World(0, 2))


def test_a_single_process_run_starts_no_process_group(corpus_path, tmp_path):
    import torch.distributed as dist

    lines = []
    train(TrainConfig(**transformer_values(corpus_path, tmp_path / "one.pt", steps=2)),
          progress=False, log=lines.append)
    assert not dist.is_initialized()
    assert lines[0] == "transformer (custom): world size 1 (one process), batch 4, cpu"
    assert load_checkpoint(tmp_path / "one.pt")["world_size"] == 1
    assert "global batch 16 = 4 processes x 4 rows" in describe_world(4, 16, "cuda")


def test_bf16_autocast_is_refused_on_the_cpu_and_for_hope(corpus_path, capsys):
    from nlbook.train import main

    config = TrainConfig(**transformer_values(corpus_path, "unused.pt", autocast=True))
    with pytest.raises(ValueError, match=r"autocast .*CUDA"):
        train(config, progress=False, log=None)
    hope = TrainConfig(**hope_values(corpus_path, "unused.pt", autocast=True, device="cuda"))
    with pytest.raises(ValueError, match=r"autocast .*transformer.* only"):
        set_up_run(hope)
    with pytest.raises(ValueError, match="autocast must be a bool"):
        TrainConfig(autocast="yes")
    assert main(["--data", str(corpus_path), "--steps", "1", "--bf16", "--no-progress"]) == 2
    assert "autocast (bf16, --bf16) is for CUDA devices" in capsys.readouterr().err


def test_the_transformer_step_runs_under_bf16_autocast():
    """What ``--bf16`` does on CUDA, tried with the CPU's autocast: the step's loss is float32
    and finite, the gradients float32 (the parameters stay float32)."""
    from nlbook.train.loop import StepForward
    from nlbook.transformer import TransformerLM

    model = TransformerLM(12, 16, 1, 2, context_length=16)
    ids = torch.randint(12, (2, 17), generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, state = StepForward(model, stateful=False)(ids[:, :-1], ids[:, 1:])
    loss.backward()
    assert state is None and loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.grad.dtype == torch.float32 for p in model.parameters())
