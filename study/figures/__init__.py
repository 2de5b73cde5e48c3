"""The report's figures: matplotlib on its Agg canvas (no screen, no pyplot), from the analysis alone.

One module per kind of figure: `epochs` (per-epoch curves), `lr_finder` (the range tests),
`strategies` (the test metric against LR, compute against it, the search as it ran), `batch_size`
(the best LR and the finder's picks against the batch size); `layout` is the
one way a figure is laid out (a panel per setting, one legend, numbers on every axis, at most 2,000
pixels a side). Each panel is drawn on its setting's metric (val_acc, maximised, by default); the
files keep their names whatever the metric (val_acc.png holds each setting's own metric). A new
figure is a function in one of them and a line in `FIGURES` and `write_figures` here.
"""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from study.experiment import Experiment
from study.figures.batch_size import plot_lr_vs_batch_size
from study.figures.epochs import METRIC, plot_epochs
from study.figures.layout import DPI
from study.figures.lr_finder import plot_lr_finder, plot_lr_finders
from study.figures.strategies import (plot_compute_vs_accuracy, plot_search_progress, plot_test_acc_vs_lr,
                                     plot_test_metric_vs_lr)
from trainables.files import write_atomic

__all__ = ["FIGURES", "OPTIONAL", "plot_compute_vs_accuracy", "plot_epochs", "plot_lr_finder", "plot_lr_finders", "plot_lr_vs_batch_size",
           "plot_search_progress", "plot_test_acc_vs_lr", "plot_test_metric_vs_lr", "save_figure", "write_figures"]

FIGURES = {  # key: (file, title in report.md), in the report's order
    "test_acc_vs_lr": ("test_acc_vs_lr.png", "Test accuracy against learning rate, every trial (finder choices marked)"),
    "lr_finder": ("lr_finder.png", "LR finder, loss vs learning rate"),
    "val_acc": ("val_acc.png", "validation accuracy per epoch"),
    "val_loss": ("val_loss.png", "validation loss per epoch"),
    "train_curves": ("train_curves.png", "training loss, accuracy and the LR each epoch ended at (its schedule's)"),
    "compute_vs_accuracy": ("compute_vs_accuracy.png", "Every strategy: work per seed against delivered test accuracy"),
    "search_progress": ("search_progress.png", "The manual search as it ran: best validation accuracy against work"),
    "lr_vs_batch_size": ("lr_vs_batch_size.png", "Best manual LR and the finder's picks against batch size, "
                         "beside linear and square-root scaling"),
}
# Figures only some studies have (several batch sizes): without data, not in the report at all, rather
# than a "skipped" line in every report of one batch size.
OPTIONAL = ("lr_vs_batch_size",)


def save_figure(fig: Figure, path: Path) -> Path:
    """The figure as a PNG at DPI, its size as laid out (no tight bounding box: it stays within MAX_INCHES)."""
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", dpi=DPI)
    write_atomic(path, buf.getvalue())
    return path


def write_figures(exp_dir: Path, experiment: Experiment, summary: dict) -> dict[str, str]:
    """Every figure into `exp_dir`: key -> its file name, or the reason it was skipped (a figure
    without data is removed, not kept stale; an OPTIONAL one without data has no key)."""
    figs = {
        "test_acc_vs_lr": (lambda: plot_test_metric_vs_lr(summary), "no trial has both an LR and a test metric"),
        "lr_finder": (lambda: plot_lr_finders(experiment, summary), "no usable range-test curve"),
        "val_acc": (lambda: plot_epochs(experiment, summary, (METRIC,)), "no trial reported its setting's metric"),
        "val_loss": (lambda: plot_epochs(experiment, summary, ("val_loss",)), "no trial reported val_loss"),
        "train_curves": (lambda: plot_epochs(experiment, summary, ("train_loss", "train_acc", "lr")),
                         "no trial reported train_loss or train_acc"),
        "compute_vs_accuracy": (lambda: plot_compute_vs_accuracy(summary), "no strategy delivered a tested model"),
        "search_progress": (lambda: plot_search_progress(summary), "no manual search"),
        "lr_vs_batch_size": (lambda: plot_lr_vs_batch_size(summary), "one batch size per task, optimiser and schedule"),
    }
    names = {}
    for key, (draw, reason) in figs.items():
        path = Path(exp_dir) / FIGURES[key][0]
        fig = draw()
        if fig is None:
            path.unlink(missing_ok=True)
            if key not in OPTIONAL:
                names[key] = reason
        else:
            save_figure(fig, path)
            names[key] = path.name
    return names
