"""Benchmarks: figures and ratios measured side by side in one run. Never asserted in tests.

From the repository root (benchmarks/ is a developer tool, not installed with the project), in the
environment of `make venv` (the `dev` extra brings psutil); `make bench ARGS="--only study"` alike:

    python -m benchmarks.bench                      # all of the below on this machine
    python -m benchmarks.bench --only throughput    # plain PyTorch loop vs the real trial
    python -m benchmarks.bench --only study         # the default study: wall, finder share, scheduling, memory
    python -m benchmarks.bench --only study --study-args="--smoke"
    python -m benchmarks.bench --only scaling       # 2 local nodes x 1 CPU against 1 node x 1 CPU
    python -m benchmarks.bench --only overhead      # Lightning's own per-step cost, and the ratio it allows
    python -m benchmarks.bench --only module        # a user's LightningModule: a bare Trainer.fit vs the real trial
    python -m benchmarks.bench --only scale         # studies of 10, 100 and 1,000 tiny trials: how the cost grows
    python -m benchmarks.bench --only scale --scale-sizes 10,100,1000,10000 --scale-figure docs/figures/scale.png

throughput: a plain PyTorch loop and a real trial (Lightning + Ray reporting + TensorBoard +
    checkpointing) at the same time, each a Ray Tune trial with 1 CPU, on the same in-memory
    tensors, model, batch size and thread count; compares seconds per epoch (Ray's
    time_this_iter_s, so reporting and checkpointing are counted; the first epoch is dropped).
study: runs a study through `study.run` and reads its results: wall time, Ray start-up and
    shutdown (its timings.json), the finder's share of the finder trial, busy time / (wall x
    slots), peak RSS per trial and of the whole process tree.
module: a user's LightningModule and live DataModule (benchmarks/lightning_task.py: LeNet, its own
    SGD, a random flip per image) trained by a bare `Trainer.fit` (no logger, checkpointing,
    progress bar or summary) and by the real trial (a manual arm: the study's reporting,
    checkpointing, TensorBoard, work counting), each a Ray Tune trial with 1 CPU, at the same time,
    on the same loaders; seconds per epoch as in throughput, the first and last epochs dropped.
overhead: no Ray; the trial's LightningModule with LeNet swapped for one linear layer, in a
    Trainer with a trial's loop settings (no progress bar, summary, checkpointing or sanity
    check; no logger: a trial logs once per epoch), against the plain loop on the same linear
    layer: what a training step costs in Lightning beyond the compute. With the plain loop's LeNet step, it
    gives the best throughput ratio a Lightning trial can reach on this machine.
scaling: the same study (--scaling-args) with --address on a local Ray cluster of one node with
    1 CPU, then of two nodes with 1 CPU each (ray.cluster_utils.Cluster); speed-up of Tune's wall.
scale: studies of tiny trials (--scale-args, as many seeds as make --scale-sizes trials), each run
    as a user would (`study.run`, then `study.analyze` on its experiment): Ray Tune's seconds per
    trial and the analysis and report's (timings.json), the driver's peak RSS (sampled), the
    `study.analyze` process's wall and peak RSS, every figure's size in pixels; the growth from
    one size to the next as a ratio and as the exponent of a power law (1: linear), extrapolated
    to 10,000 trials; a log-log figure of the times (--scale-figure).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil


def plain_epoch(net, opt, x, y, batch_size: int) -> None:
    """One training epoch, the plain PyTorch way."""
    import torch
    import torch.nn.functional as F

    net.train()
    for idx in torch.randperm(len(y)).split(batch_size):
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def plain_trial(config: dict, data) -> None:
    """The same work as a trial, in a plain PyTorch loop: train epoch + validation, report."""
    import torch
    from ray import tune

    from trainables.model import lenet5

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    vx, vy = torch.from_numpy(data.val_x), torch.from_numpy(data.val_y)
    net = lenet5().to(memory_format=torch.channels_last)  # the same model as a trial's
    opt = torch.optim.SGD(net.parameters(), lr=config["lr"], momentum=0.9)
    for epoch in range(config["epochs"]):
        plain_epoch(net, opt, x, y, config["batch_size"])
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(a).argmax(1) == b).sum()) for a, b in zip(vx.split(1024), vy.split(1024)))
        tune.report({"val_acc": correct / len(vy), "epoch": epoch})


def _side_by_side(config: dict, data) -> None:
    """One Tune trainable for both contenders, so they run at the same time on the same machine."""
    from trainables.trainable import train_trial

    if config["kind"] == "plain":
        plain_trial(config, data)
    else:
        train_trial(config, data)


def _epoch_seconds(result) -> list[float]:
    """Per-epoch seconds of a trial, first epoch dropped (worker warm-up, the finder, imports)."""
    return list(result.metrics_dataframe["time_this_iter_s"])[1:]


def _race(trainable, common: dict, kinds: tuple[str, str], name: str, env: dict) -> dict[str, list[float]]:
    """`trainable` once per kind (`config["kind"]`), side by side in one Ray Tune run on a local Ray
    of 2 CPUs, 1 each: each kind's seconds per epoch (`_epoch_seconds`)."""
    import ray
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             runtime_env={"env_vars": {"TQDM_DISABLE": "1", **env}})
    try:
        results = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={**common, "kind": tune.grid_search(list(kinds))},
            run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="lrstudy-bench-"), name=name, verbose=0,
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                                      sync_config=tune.SyncConfig(sync_artifacts=True, sync_period=15),
                                      # the per-epoch seconds come from result.json, whatever the environment says
                                      callbacks=[CSVLoggerCallback(), JsonLoggerCallback()]),
        ).fit()
    finally:
        ray.shutdown()
    if results.errors:
        raise RuntimeError(f"{name} benchmark: {results.errors[0]}")
    return {r.config["kind"]: _epoch_seconds(r) for r in results}


def bench_throughput(epochs: int, subset: int | None) -> dict:
    """A plain loop and a real trial side by side (1 CPU each, two at once as in the study)."""
    from ray import tune

    from study.config import StudyConfig
    from study.space import trial_points
    from trainables.data import load_dataset

    data = load_dataset(subset=subset)
    [common] = trial_points(StudyConfig(epochs=epochs, subset=subset, arms=("manual",), lrs=(0.01,)))  # a study's trial
    epochs_s = _race(tune.with_parameters(_side_by_side, data=data), common, ("plain", "trial"), "throughput", {})
    seconds = {kind: statistics.median(s) for kind, s in epochs_s.items()}
    per_epoch = [p / t for p, t in zip(epochs_s["plain"], epochs_s["trial"])]  # the machine's noise shows here
    return {"images_per_epoch": data.sizes(), "plain_s_per_epoch": seconds["plain"], "trial_s_per_epoch": seconds["trial"],
            "ratio_plain_over_trial": seconds["plain"] / seconds["trial"],
            "ratio_per_epoch_min": min(per_epoch), "ratio_per_epoch_max": max(per_epoch)}


MODULE_TASK = f"{Path(__file__).resolve().parent / 'lightning_task.py'}:TASK"


def bare_fit(config: dict) -> None:
    """A bare `Trainer.fit` of the module task, reporting each epoch's end to Tune (no checkpoint)."""
    import pytorch_lightning as pl
    import torch
    from ray import tune

    from trainables import framework
    from trainables.loaders import live
    from trainables.tasks import build_module, load

    class Report(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            tune.report({"epoch": trainer.current_epoch})

    framework.quiet()
    torch.set_num_threads(1)
    framework.seed(config["seed"])
    module = build_module(MODULE_TASK)
    framework.set_lr(module, config["lr"])
    dm = live(load(MODULE_TASK).data(), None).datamodule
    pl.Trainer(max_epochs=config["epochs"], accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
               callbacks=[Report()]).fit(module, datamodule=dm)


def _module_side_by_side(config: dict) -> None:
    from trainables.trainable import train_trial

    if config["kind"] == "bare":
        bare_fit(config)
    else:
        train_trial(config, {MODULE_TASK: None})


def bench_module(epochs: int, subset: int | None) -> dict:
    """A bare Trainer.fit and a real trial of a user's module side by side (1 CPU each)."""

    from study.config import StudyConfig
    from study.space import trial_points

    here = str(Path(__file__).resolve().parent.parent)
    [common] = trial_points(StudyConfig(epochs=epochs, arms=("manual",), lrs=(0.01,), task=(MODULE_TASK,)))
    common.update(optimizer="module", lr_schedule="module", batch_size=None)  # its own optimiser and batches
    epochs_s = _race(_module_side_by_side, common, ("bare", "trial"), "module",
                     {"LRSTUDY_BENCH_SUBSET": str(subset or ""), "PYTHONPATH": here})
    epochs_s = {kind: s[:-1] for kind, s in epochs_s.items()}  # the last: the trial's test set too
    seconds = {kind: statistics.median(s) for kind, s in epochs_s.items()}
    per_epoch = [b / t for b, t in zip(epochs_s["bare"], epochs_s["trial"])]
    return {"subset": subset, "bare_s_per_epoch": seconds["bare"], "trial_s_per_epoch": seconds["trial"],
            "ratio_bare_over_trial": seconds["bare"] / seconds["trial"],
            "ratio_per_epoch_min": min(per_epoch), "ratio_per_epoch_max": max(per_epoch)}


def bench_overhead(subset: int | None, repeats: int = 3) -> dict:
    """Lightning's per-step cost beyond the compute (no Ray), over one training epoch (55k images
    unless `subset`): interleaved repeats, medians."""
    import logging
    import warnings

    import pytorch_lightning as pl
    import torch
    from torch import nn

    from trainables.batches import batches
    from trainables.data import load_dataset
    from trainables.model import lenet5
    from trainables.module import LitClassifier
    from trainables.optim import Optim, install

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*(LeafSpec|no `val_dataloader`).*")
    torch.set_num_threads(1)
    data = load_dataset(subset=subset)
    x, y = torch.from_numpy(data.train_x), torch.from_numpy(data.train_y)
    steps = -(-len(y) // 64)

    def linear() -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))

    def plain(net: nn.Module) -> float:
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        start = time.perf_counter()
        plain_epoch(net, opt, x, y, 64)
        return (time.perf_counter() - start) / steps

    class EpochTime(pl.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module):
            self.seconds = time.perf_counter() - self.start

    def lightning() -> float:
        model, timer = LitClassifier(lr=0.01), EpochTime()
        model.net = linear()
        install(model, Optim())
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, callbacks=[timer],
                             enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                             num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(model, batches(x, y, 64, shuffle=True, seed=0))
        return timer.seconds / steps

    runs = [(plain(linear()), lightning(), plain(lenet5().to(memory_format=torch.channels_last)))
            for _ in range(repeats)]
    plain_s, lightning_s, lenet_s = (statistics.median(r[i] for r in runs) for i in range(3))
    overhead = lightning_s - plain_s
    return {"steps": steps, "plain_linear_ms": plain_s * 1e3, "lightning_linear_ms": lightning_s * 1e3,
            "overhead_ms": overhead * 1e3, "lenet_plain_ms": lenet_s * 1e3, "best_ratio": lenet_s / (lenet_s + overhead)}


class _MemorySampler(threading.Thread):
    """Peak memory of a process tree (sum of PSS: shared pages split between their users) and of
    its largest trial process (RSS, and USS: the pages only that process holds). RSS counts in
    every process the shared libraries (the CUDA build of torch alone maps ~500 MB) and the
    object store pages it has read.

    One sample reads every process's page tables (~0.1 s of CPU for a default study's ~10
    processes): every 0.5 s, that took ~20 % of a core from the trials being measured. A trial's
    memory plateaus within its first epoch, so a sample every few seconds finds its peak; the
    trials' own peak RSS (getrusage) is reported beside it."""

    def __init__(self, pid: int, period_s: float = 4.0):
        super().__init__(daemon=True)
        self.root, self.running, self.period_s = psutil.Process(pid), True, period_s
        self.peak = {"tree_pss": 0, "trial_rss": 0, "trial_uss": 0}

    def run(self):
        while self.running:
            time.sleep(self.period_s)
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                info = {p: p.memory_full_info() for p in procs}
            except psutil.Error:  # a process ended meanwhile
                continue
            self.peak["tree_pss"] = max(self.peak["tree_pss"], sum(m.pss for m in info.values()))
            for p, m in info.items():
                if any("ImplicitFunc" in part or "train_trial" in part for part in _cmdline(p)):
                    self.peak["trial_rss"] = max(self.peak["trial_rss"], m.rss)
                    self.peak["trial_uss"] = max(self.peak["trial_uss"], m.uss)


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def bench_study(study_args: str) -> dict:
    results = Path(tempfile.mkdtemp(prefix="lrstudy-bench-"))
    cmd = [sys.executable, "-m", "study.run", "--results-dir", str(results), "--name", "bench", *shlex.split(study_args)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = _MemorySampler(proc.pid)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    sampler.running = False
    if proc.returncode:
        raise SystemExit(f"study failed ({proc.returncode}):\n{out[-3000:]}")
    exp = results / "bench"
    summary = json.loads((exp / "summary.json").read_text())
    rows = _trial_rows(exp)
    busy = sum(r[-1]["report_ts"] - r[0]["trial_start_ts"] for r in rows)
    tune_wall = _tune_wall(rows)
    config = json.loads((exp / "study.json").read_text())
    timings = json.loads((exp / "timings.json").read_text())
    slots = config["cluster"].get("CPU", 1) // config["resources_per_trial"]["cpu"]
    finder = summary.get("finder") or {}
    peak_trial_mb = max((r[-1].get("peak_rss_mb", 0) for r in rows), default=0)
    return {
        "study_args": study_args, "process_wall_s": wall, "tune_wall_s": tune_wall,
        "outside_tune_s": wall - tune_wall, **{f"run_{k}": v for k, v in timings.items()},
        "finder_share": (finder.get("finder_time_s") or 0) / (finder.get("time_s") or float("inf")),
        "finder_time_s": finder.get("finder_time_s"), "slots": slots,
        "busy_over_wall_x_slots": busy / (tune_wall * slots),
        "peak_rss_trial_mb_reported": peak_trial_mb, **{f"peak_{k}_mb": v / 2**20 for k, v in sampler.peak.items()},
        "experiment": str(exp),
    }


def _trial_rows(exp: Path) -> list[list[dict]]:
    """Each trial's reported rows, read by Ray Tune's ExperimentAnalysis (trials with none left out)."""
    from ray import tune

    frames = tune.ExperimentAnalysis(str(exp)).trial_dataframes.values()
    return [df.to_dict("records") for df in frames if not df.empty]


def _tune_wall(rows: list[list[dict]]) -> float:
    """First trial start to last report."""
    return max(r[-1]["report_ts"] for r in rows) - min(r[0]["trial_start_ts"] for r in rows)


def bench_scaling(study_args: str) -> dict:
    from ray.cluster_utils import Cluster

    walls, nodes_used = {}, {}
    for n_nodes in (1, 2):
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
        try:
            for _ in range(n_nodes - 1):
                cluster.add_node(num_cpus=1)
            results = Path(tempfile.mkdtemp(prefix="lrstudy-bench-"))
            cmd = [sys.executable, "-m", "study.run", "--address", cluster.address, "--results-dir", str(results),
                   "--name", f"nodes{n_nodes}", *shlex.split(study_args)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"study on {n_nodes} node(s) failed:\n{proc.stderr[-3000:]}")
            exp = results / f"nodes{n_nodes}"
            rows = _trial_rows(exp)
            walls[n_nodes] = _tune_wall(rows)
            nodes_used[n_nodes] = len({r[0]["node_id"] for r in rows})
        finally:
            cluster.shutdown()
    return {"study_args": study_args, "wall_1": walls[1], "wall_2": walls[2], "speedup": walls[1] / walls[2],
            "nodes_used_2": nodes_used[2]}


SCALE_ARGS = "--smoke --subset 512 --epochs 1 --arms manual --lrs 1e-2,1e-1"  # 2 trials per seed, 8 batches each
SCALE_GOALS = {1000: 10.0, 10_000: 60.0}  # trials: seconds of analysis and report at most (issue 27)
SCALE_TIMES = {"tune_s": "Ray Tune", "analysis_s": "analysis and report (in the run)", "analyze_s": "study.analyze"}


class _PeakRSS(threading.Thread):
    """Peak RSS of one process, sampled every `period_s` (memory_info reads /proc/PID/statm: cheap)."""

    def __init__(self, pid: int, period_s: float = 0.2):
        super().__init__(daemon=True)
        self.process, self.period_s, self.running, self.peak = psutil.Process(pid), period_s, True, 0

    def run(self):
        while self.running:
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:  # it ended
                return
            time.sleep(self.period_s)


def _run_sampled(cmd: list[str]) -> tuple[float, float]:
    """Run `cmd`: its wall seconds and peak RSS in MB; SystemExit with its output's end if it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = _PeakRSS(proc.pid)
    sampler.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - start
    sampler.running = False
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{shlex.join(cmd[1:])} failed ({proc.returncode}):\n{out[-3000:]}")
    return wall, sampler.peak / 2**20


def scale_seeds(trials: int, study_args: str) -> int:
    """How many --seeds make `trials` trials with `study_args`; SystemExit (exit 2) if none does."""
    from study.config import build_parser, config_from_args
    from study.space import plan

    per_seed = plan(config_from_args(build_parser("study.run", "").parse_args([*shlex.split(study_args), "--seeds", "1"]))).trials
    if trials < per_seed or trials % per_seed:
        print(f"benchmarks.bench: error: --scale-sizes: {trials} is not a multiple of the {per_seed} trials per seed of "
              f"--scale-args", file=sys.stderr)
        raise SystemExit(2)
    return trials // per_seed


def _pixels(png: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(png) as image:
        return image.size


def scale_growth(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """From each size to the next: the trials' factor, and per key its ratio and the exponent of the
    power law through the two points (1: linear)."""
    out = []
    for a, b in zip(rows, rows[1:]):
        factor = b["trials"] / a["trials"]
        out.append({"from": a["trials"], "to": b["trials"], **{k: (b[k] / a[k], math.log(b[k] / a[k]) / math.log(factor))
                                                                for k in keys}})
    return out


def _scale_figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    trials = [r["trials"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in SCALE_TIMES.items():
        ax.plot(trials, [r[key] for r in rows], marker="o", label=label)
    ends = (trials[-1], max(10_000, trials[-1]))  # analysis and report, on from the largest study at slope 1
    ax.plot(ends, [rows[-1]["analysis_s"] * t / trials[-1] for t in ends], color="C1", linestyle=":",
            label="analysis and report growing linearly")
    ax.plot(*zip(*SCALE_GOALS.items()), "k*", markersize=9, linestyle="none", label="goal: analysis and report (issue 27)")
    ax.set(xscale="log", yscale="log", xlabel="trials in the study", ylabel="seconds",
           title=f"Study cost against its size ({os.cpu_count()} CPUs)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def bench_scale(sizes: list[int], study_args: str, figure: Path | None) -> dict:
    """Each size's study, then study.analyze on it; see the module's docstring."""
    seeds = [scale_seeds(n, study_args) for n in sizes]  # every size checked before the first study
    results = Path(tempfile.mkdtemp(prefix="lrstudy-bench-"))
    rows = []
    for n, k in zip(sizes, seeds):
        exp = results / f"scale{n}"
        wall, driver_mb = _run_sampled([sys.executable, "-m", "study.run", "--results-dir", str(results), "--name",
                                        exp.name, *shlex.split(study_args), "--seeds", str(k)])
        timings = json.loads((exp / "timings.json").read_text())
        analyze_s, analyze_mb = _run_sampled([sys.executable, "-m", "study.analyze", str(exp)])
        rows.append({"trials": n, "seeds": k, "process_wall_s": wall, "tune_s": timings["tune_s"],
                     "analysis_s": timings["analysis_s"], "analyze_s": analyze_s, "driver_peak_mb": driver_mb,
                     "analyze_peak_mb": analyze_mb, "figures": {p.name: _pixels(p) for p in sorted(exp.glob("*.png"))},
                     "experiment": str(exp)})
    if figure:
        _scale_figure(rows, figure)
    return {"study_args": study_args, "rows": rows, "figure": str(figure) if figure else None,
            "growth": scale_growth(rows, (*SCALE_TIMES, "driver_peak_mb", "analyze_peak_mb"))}


def _print_scale(r: dict) -> None:
    print(f"scale       {r['study_args']} --seeds K, each study then `study.analyze` on it:")
    print(f"{'trials':>8} {'Tune s':>8} {'s/trial':>8} {'analysis s':>11} {'analyze s':>10} {'driver MB':>10} "
          f"{'analyze MB':>11} {'process s':>10}  largest figure (px)")
    for row in r["rows"]:
        name, (w, h) = max(row["figures"].items(), key=lambda f: max(f[1]))
        print(f"{row['trials']:>8} {row['tune_s']:>8.1f} {row['tune_s'] / row['trials']:>8.3f} {row['analysis_s']:>11.1f} "
              f"{row['analyze_s']:>10.1f} {row['driver_peak_mb']:>10.0f} {row['analyze_peak_mb']:>11.0f} "
              f"{row['process_wall_s']:>10.1f}  {w} x {h} {name}")
    print("            (analysis s: analysis and report in the run, timings.json; analyze s: the study.analyze process, "
          "imports included; MB: peak RSS)")
    for name in r["rows"][-1]["figures"]:
        sizes = ", ".join(f"{row['trials']}: {' x '.join(map(str, row['figures'][name]))}" for row in r["rows"]
                          if name in row["figures"])
        print(f"  figure {name} (px, by trials): {sizes}")
    for g in r["growth"]:
        print(f"  growth {g['from']} -> {g['to']} trials (x{g['to'] / g['from']:g}): " + ", ".join(
            f"{label} x{g[key][0]:.2f} (exponent {g[key][1]:.2f})"
            for key, label in (*SCALE_TIMES.items(), ("driver_peak_mb", "driver memory"),
                               ("analyze_peak_mb", "study.analyze memory"))))
    if r["growth"]:  # fixed costs weigh less as the study grows: the power law's exponent rises with the size
        a, b, g = r["rows"][-2], r["rows"][-1], r["growth"][-1]
        for key, label in SCALE_TIMES.items():
            marginal = (b[key] - a[key]) / (b["trials"] - a["trials"])
            print(f"  {label} extrapolated to 10,000 trials: {b[key] * (10_000 / b['trials']) ** g[key][1]:.0f} s "
                  f"(power law through the last two sizes), {b[key] + marginal * (10_000 - b['trials']):.0f} s (their "
                  f"{1000 * marginal:.1f} ms per added trial)")
    if r["figure"]:
        print(f"  figure: {r['figure']}")
    print(f"  experiments in {Path(r['rows'][0]['experiment']).parent}")


def _sizes(text: str) -> list[int]:
    sizes = [int(s) for s in text.split(",")]
    if not sizes or min(sizes) < 1 or sizes != sorted(set(sizes)):
        raise ValueError(text)
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.bench", description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--only", choices=("throughput", "module", "study", "scaling", "overhead", "scale"),
                        help="run one benchmark (default: all)")
    parser.add_argument("--epochs", type=int, default=6, help="throughput, module: epochs per trial (first is dropped)")
    parser.add_argument("--subset", type=int, default=None,
                        help="throughput, module and overhead: training images (default: all 55,000)")
    parser.add_argument("--study-args", default="", help="study: extra flags for study.run (default study if empty)")
    parser.add_argument("--scaling-args", default="--subset 20000 --epochs 3",
                        help="scaling: flags for study.run on the 1- and 2-node clusters")
    parser.add_argument("--scale-sizes", type=_sizes, default=[10, 100, 1000], metavar="N,N,...",
                        help="scale: trials per study, increasing (default: 10,100,1000)")
    parser.add_argument("--scale-args", default=SCALE_ARGS, help=f"scale: flags for study.run but --seeds (default: {SCALE_ARGS})")
    parser.add_argument("--scale-figure", type=Path, default=None, help="scale: write the log-log figure of the times here")
    args = parser.parse_args(argv)
    print(f"machine: {os.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:.0f} GiB, {sys.platform}")
    if args.only in (None, "throughput"):
        r = bench_throughput(args.epochs, args.subset)
        print(f"throughput  plain loop {r['plain_s_per_epoch']:.2f} s/epoch, trial {r['trial_s_per_epoch']:.2f} s/epoch, "
              f"ratio plain/trial {r['ratio_plain_over_trial']:.3f}, epoch by epoch {r['ratio_per_epoch_min']:.3f}-"
              f"{r['ratio_per_epoch_max']:.3f}  (goal >= 0.95; {r['images_per_epoch']})")
    if args.only in (None, "module"):
        r = bench_module(args.epochs, args.subset)
        print(f"module      a user's LightningModule and live DataModule: bare Trainer.fit {r['bare_s_per_epoch']:.2f} s/epoch, "
              f"trial {r['trial_s_per_epoch']:.2f} s/epoch, ratio bare/trial {r['ratio_bare_over_trial']:.3f}, epoch by epoch "
              f"{r['ratio_per_epoch_min']:.3f}-{r['ratio_per_epoch_max']:.3f}  (goal >= 0.95; subset {r['subset'] or 'all'})")
    if args.only in (None, "overhead"):
        r = bench_overhead(args.subset)
        print(f"overhead    Lightning's loop, linear model, {r['steps']} steps: {r['lightning_linear_ms']:.3f} ms/step against "
              f"{r['plain_linear_ms']:.3f} plain = {r['overhead_ms']:.3f} ms per step; a plain LeNet step takes "
              f"{r['lenet_plain_ms']:.2f} ms, so a Lightning trial can reach at best a throughput ratio of {r['best_ratio']:.3f}")
    if args.only in (None, "study"):
        r = bench_study(args.study_args)
        print(f"study       {r['study_args'] or 'default study'}: process wall {r['process_wall_s']:.1f} s, "
              f"Tune (first trial start to last report) {r['tune_wall_s']:.1f} s, outside Tune {r['outside_tune_s']:.1f} s: "
              f"start-up {r['run_startup_s']:.1f} s (Ray start-up {r['run_ray_start_s']:.1f} s alongside imports and data "
              f"{r['run_prepare_s']:.1f} s), Tune's own start and end {r['run_tune_s'] - r['tune_wall_s']:.1f} s, "
              f"finish {r['run_finish_s']:.1f} s (Ray shutdown {r['run_ray_shutdown_s']:.1f} s alongside analysis and report "
              f"{r['run_analysis_s']:.1f} s), the rest importing study.run and ray")
        print(f"finder      lr_find {r['finder_time_s'] or 0:.2f} s = {100 * r['finder_share']:.2f} % of the finder trial (goal <= 3 %)")
        print(f"scheduling  busy / (wall x {r['slots']:.0f} slots) = {r['busy_over_wall_x_slots']:.3f} (goal >= 0.90)")
        print(f"memory      per trial process: peak USS {r['peak_trial_uss_mb']:.0f} MB (goal <= 700 MB), peak RSS "
              f"{r['peak_trial_rss_mb']:.0f} MB sampled / {r['peak_rss_trial_mb_reported']:.0f} MB reported (shared libraries and "
              f"object store pages included); whole study: peak PSS {r['peak_tree_pss_mb']:.0f} MB")
        print(f"            results in {r['experiment']}")
    if args.only in (None, "scaling"):
        r = bench_scaling(args.scaling_args)
        print(f"scaling     {r['study_args']}: 1 node x 1 CPU {r['wall_1']:.1f} s, 2 nodes x 1 CPU {r['wall_2']:.1f} s "
              f"(trials on {r['nodes_used_2']} nodes), speed-up {r['speedup']:.2f}x (goal >= 1.8x)")
    if args.only in (None, "scale"):
        _print_scale(bench_scale(args.scale_sizes, args.scale_args, args.scale_figure))
    return 0


if __name__ == "__main__":
    sys.exit(main())
