"""The search space: which trials the study runs, each as its whole config (a flat dict).

Per optimiser and seed, a finder trial per rule (its LR is chosen inside the trial), the cyclic
trial, a trial per learning-rate-free arm (at their base LR, 1.0), and the manual LRs: the grid's
`--lrs`, or for ASHA `--num-samples` LRs drawn log-uniformly from `--lr-range` with Ray Tune's own
`tune.loguniform`, seeded so the same command draws the same LRs. For the Bayesian search the
manual LRs are not known in advance: per optimiser and seed, `bayes_searches` gives what its
trials share, and study/search.py draws their LRs as the study runs. Every trial's config also
carries the study's `TRIAL_SETTINGS`, so a trial depends on its config alone
(trainables/trainable.py lists the keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ray import tune

from study.config import DIMENSIONS, StudyConfig, dimension_value
from trainables import LR_FREE, LR_FREE_LR

# The StudyConfig fields that shape every trial alike; each trial's config carries them by name.
# (The dimensions, batch_size among them, come with the trial's setting.)
TRIAL_SETTINGS = ("epochs", "momentum", "weight_decay", "finder_min_lr", "finder_max_lr", "finder_num_training",
                  "finder_mode", "cpus_per_trial", "val_size", "split_seed", "normalize", "subset",
                  "metric", "mode", "target")


def manual_lrs(config: StudyConfig) -> list[float]:
    if config.search == "grid":
        return list(config.lrs)
    low, high = config.lr_range
    draws = tune.loguniform(low, high).sample(size=config.num_samples, random_state=np.random.default_rng(config.seed))
    return [float(lr) for lr in draws]


def trial_points(config: StudyConfig, task_configs: dict[str, StudyConfig] | None = None) -> list[dict]:
    """Every trial's config: per setting (`StudyConfig.settings`: an optimiser, ...) and seed, the finder trial(s), the cyclic one, the
    learning-rate-free ones, then the manual LRs (for --search bayes, drawn as the study runs: see
    `bayes_searches`); "arm", "lr", "finder_rule", "seed", the setting's dimensions ("optimizer"),
    then `TRIAL_SETTINGS`, from the setting's task's config in `task_configs` where it has one
    (`study.config.with_task_defaults`: its settings are its own optimisers and schedules too)."""
    points = []
    for setting in config.settings(task_configs):
        task_config = (task_configs or {}).get(setting["task"], config)
        settings = {name: getattr(task_config, name) for name in TRIAL_SETTINGS}
        for seed in range(config.seed, config.seed + config.seeds):
            common = {"seed": seed, **setting, **settings}
            if "finder" in config.arms:
                points += [{"arm": "finder", "lr": None, "finder_rule": rule, **common} for rule in config.finder_rules]
            if "cyclic" in config.arms:
                points.append({"arm": "cyclic", "lr": None, "finder_rule": config.finder_rules[0], **common})
            points += [{"arm": arm, "lr": LR_FREE_LR, "finder_rule": None, **common}
                       for arm in LR_FREE if arm in config.arms]
            if "manual" in config.arms and config.search != "bayes":
                points += [{"arm": "manual", "lr": lr, "finder_rule": None, **common} for lr in manual_lrs(task_config)]
    return points


def bayes_searches(config: StudyConfig, task_configs: dict[str, StudyConfig] | None = None) -> list[dict]:
    """--search bayes: per setting and seed, the config that its search's manual trials share, with
    "lr" the domain they are drawn from, `tune.loguniform` over `--lr-range` (the same object for
    all); none for the other searches."""
    if config.search != "bayes" or "manual" not in config.arms:
        return []
    lr = tune.loguniform(*config.lr_range)
    configs = {task: (task_configs or {}).get(task, config) for task in config.task}
    return [{"arm": "manual", "lr": lr, "finder_rule": None, "seed": seed, **setting,
             **{name: getattr(configs[setting["task"]], name) for name in TRIAL_SETTINGS}}
            for setting in config.settings(task_configs) for seed in range(config.seed, config.seed + config.seeds)]


@dataclass(frozen=True)
class Plan:
    """The study's trials, worked out once from its config and handed to everything that runs it:
    `points` (`trial_points`), `searches` (`bayes_searches`), how many LRs each search draws, and
    the settings they belong to (`StudyConfig.settings`, each task's own: study.json keeps them)."""

    points: list[dict]
    searches: list[dict]
    samples_per_search: int
    settings: list[dict] = field(default_factory=list)

    @property
    def trials(self) -> int:
        """How many trials the study runs: every point, and `samples_per_search` per search."""
        return len(self.points) + len(self.searches) * self.samples_per_search

    @property
    def epochs(self) -> int:
        """How many epochs the study trains, all its trials together (tasks may differ)."""
        return sum(p["epochs"] for p in self.points) + sum(s["epochs"] for s in self.searches) * self.samples_per_search

    @property
    def max_epochs(self) -> int:
        return max(p["epochs"] for p in self.points + self.searches)


def plan(config: StudyConfig, task_configs: dict[str, StudyConfig] | None = None) -> Plan:
    """`task_configs`: each task's config where its defaults change the study's (run.py)."""
    return Plan(trial_points(config, task_configs), bayes_searches(config, task_configs), config.num_samples,
                config.settings(task_configs))


def param_space(points: list[dict]) -> dict:
    """Ray Tune's `param_space` for exactly `points` (run them as BasicVariantGenerator's
    `points_to_evaluate`, one sample each): a key's value where every point has the same one, else
    a `tune.choice` of the values the points take, so that each point is a valid preset. A point's
    value may be a domain (the "lr" of `bayes_searches`): Ray Tune resolves one inside a choice."""
    space = {}
    for key in points[0]:
        values = list(dict.fromkeys(p[key] for p in points))
        space[key] = values[0] if len(values) == 1 else tune.choice(values)
    return space


def trial_dirname(trial, tasks: tuple[str, ...] = ()) -> str:
    """Trial folders (and so TensorBoard runs) named by what they are and each dimension of their setting,
    "manual_lr=0.01_fashion-lenet_sgd_constant_b64_s0_<id>",
    "finder-valley_sgd_s0_<id>", "prodigy_sgd_s0_<id>" (a learning-rate-free arm: its LR is adapted);
    a task by its short name among the study's `tasks` (bind them: `functools.partial`)."""
    c = trial.config
    label = c["arm"] if c["arm"] in LR_FREE else \
        f"{c['arm']}_lr={c['lr']:.3g}" if c["lr"] is not None else f"{c['arm']}-{c['finder_rule']}"
    return "_".join([label, *(dimension_value(d, c[d], tasks) for d in DIMENSIONS if d in c), f"s{c['seed']}", trial.trial_id])
