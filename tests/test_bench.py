"""`python -m benchmarks.bench` runs and prints its figures (real Ray, Lightning, Fashion-MNIST, tiny
sizes). The figures themselves are never asserted: they are measurements, not properties."""

from __future__ import annotations

import json
import math
import re
import tempfile
from pathlib import Path

import pytest

from tests.conftest import real_data_dir, run_module

pytestmark = pytest.mark.slow


def bench(tmp_path: Path, *args: str, **env: str) -> str:
    # The benchmark's scratch folders go to tmp_path; Ray's session folder stays in the usual
    # place (its socket paths must stay short).
    proc = run_module("benchmarks.bench", *args, TMPDIR=str(tmp_path), RAY_TMPDIR=tempfile.gettempdir(),
                      FASHION_MNIST_DIR=str(real_data_dir()), **env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def number(pattern: str, text: str, positive: bool = True) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    value = float(match.group(1))
    assert math.isfinite(value) and (value > 0 or not positive)
    return value


def test_throughput_and_overhead_print_their_ratios(tmp_path):
    # Ray's default loggers off, as a study sets them while it runs: the per-epoch seconds must
    # still be there (they come from result.json).
    out = bench(tmp_path, "--only", "throughput", "--epochs", "2", "--subset", "1000",
                TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1")
    for pattern in (r"plain loop ([\d.]+) s/epoch", r"trial ([\d.]+) s/epoch", r"ratio plain/trial ([\d.]+)"):
        number(pattern, out)

    out = bench(tmp_path, "--only", "overhead", "--subset", "640")
    assert "10 steps" in out
    overhead = number(r"= (-?[\d.]+) ms per step", out, positive=False)  # 10 steps: noisy, maybe < 0
    lenet = number(r"plain LeNet step takes ([\d.]+) ms", out)
    assert number(r"throughput ratio of ([\d.]+)", out) == pytest.approx(lenet / (lenet + overhead), abs=0.002)


def test_study_benchmark_reads_the_runs_own_timings(tmp_path):
    out = bench(tmp_path, "--only", "study", "--study-args=--smoke")  # trials long enough for the memory sampler
    exp = Path(re.search(r"results in (\S+)", out).group(1))
    assert exp.is_relative_to(tmp_path)
    timings = json.loads((exp / "timings.json").read_text())
    assert f"Ray start-up {timings['ray_start_s']:.1f} s" in out and f"Ray shutdown {timings['ray_shutdown_s']:.1f} s" in out
    for pattern in (r"lr_find ([\d.]+) s", r"busy / \(wall x \d+ slots\) = ([\d.]+)", r"peak USS (\d+) MB"):
        number(pattern, out)


def test_scale_reports_each_studys_times_memory_and_figures(tmp_path):
    figure = tmp_path / "scale.png"
    out = bench(tmp_path, "--only", "scale", "--scale-sizes", "4", "--scale-figure", str(figure))
    exp = Path(re.search(r"experiments in (\S+)", out).group(1)) / "scale4"
    assert exp.is_relative_to(tmp_path)
    assert len(list(exp.glob("*/params.json"))) == 4  # 4 trials: --seeds 2 of the 2 default LRs
    timings = json.loads((exp / "timings.json").read_text())
    row = re.search(r"^\s+4\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s", out, re.M)
    assert row, out
    tune_s, per_trial, analysis_s, analyze_s, driver_mb, analyze_mb, wall = map(float, row.groups())
    assert tune_s == round(timings["tune_s"], 1) and per_trial == pytest.approx(timings["tune_s"] / 4, abs=1e-3)
    assert analysis_s == round(timings["analysis_s"], 1) and 0 < analyze_s < wall and driver_mb > 0 and analyze_mb > 0
    from PIL import Image

    pngs = sorted(exp.glob("*.png"))
    assert pngs
    for png in pngs:  # every figure's size as the file has it
        with Image.open(png) as image:
            assert f"figure {png.name} (px, by trials): 4: {image.size[0]} x {image.size[1]}" in out
    with Image.open(figure) as image:
        assert image.format == "PNG"
