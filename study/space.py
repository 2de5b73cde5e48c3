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
    """Every trial of the study: per optimiser and seed, the finder trial(s), then the manual LRs."""
    points = []
    for optimizer in config.optimizer:
        for seed in range(config.seed, config.seed + config.seeds):
            common = {"seed": seed, "optimizer": optimizer}
            if "finder" in config.arms:
                points += [{"arm": "finder", "lr": None, "finder_rule": rule, **common} for rule in config.finder_rules]
            if "cyclic" in config.arms:
                points.append({"arm": "cyclic", "lr": None, "finder_rule": config.finder_rules[0], **common})
            if "manual" in config.arms:
                points += [{"arm": "manual", "lr": lr, "finder_rule": None, **common} for lr in manual_lrs(config)]
    return points


def trial_dirname(trial) -> str:
    """Trial folders (and so TensorBoard runs) named by what they are: "manual_lr=0.01_sgd_s0_<id>"."""
    c = trial.config
    label = f"{c['arm']}_lr={c['lr']:.3g}" if c["lr"] is not None else f"{c['arm']}-{c['finder_rule']}"
    return f"{label}_{c['optimizer']}_s{c['seed']}_{trial.trial_id}"
