"""The search space: which trials the study runs, as a list of points {"arm", "lr", "seed"}.

One finder trial (its LR is chosen inside the trial), plus the manual LRs: the grid's `--lrs`,
or for ASHA `--num-samples` LRs drawn log-uniformly from `--lr-range` with Ray Tune's own
`tune.loguniform`, seeded so the same command draws the same LRs.
"""

from __future__ import annotations

import numpy as np
from ray import tune

from study.config import StudyConfig


def manual_lrs(config: StudyConfig) -> list[float]:
    if config.search == "grid":
        return list(config.lrs)
    low, high = config.lr_range
    draws = tune.loguniform(low, high).sample(size=config.num_samples, random_state=np.random.default_rng(config.seed))
    return [float(lr) for lr in draws]


def trial_points(config: StudyConfig) -> list[dict]:
    """Every trial of the study, finder first."""
    finder = {"arm": "finder", "lr": None, "seed": config.seed}
    return [finder] + [{"arm": "manual", "lr": lr, "seed": config.seed} for lr in manual_lrs(config)]


def trial_dirname(trial) -> str:
    """Trial folders (and so TensorBoard runs) named by arm and LR: "manual_lr=0.0001_<id>"."""
    arm, lr = trial.config["arm"], trial.config["lr"]
    label = arm if lr is None else f"{arm}_lr={lr:.3g}"
    return f"{label}_{trial.trial_id}"
