"""The Bayesian search (--search bayes): Optuna's TPE over the manual LR, run by Ray Tune.

One `BayesSearch` (a Ray Tune `Searcher`) runs the whole study: it first hands out the study's
fixed trials (finder, cyclic, learning-rate-free: the plan's `points`), which feed no model,
then the manual trials of one independent search per optimiser and seed (the plan's `searches`),
each an `OptunaSearch` with its own `TPESampler`, seeded with the search's seed. A search
suggests `batch` LRs at a time (the trials the cluster runs at once) and learns from a batch
only when all of it has ended (Ray's `ConcurrencyLimiter(batch=True)`): what it suggests then
depends on the results of its earlier batches alone, not on which trial ended first, so the same
command on the same machine draws the same LRs.
"""

from __future__ import annotations

import pickle

import optuna
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from study.config import DIMENSIONS, StudyConfig

optuna.logging.set_verbosity(optuna.logging.WARNING)  # no line per study created or trial told


def startup_trials(num_samples: int) -> int:
    """How many of a search's LRs TPE draws at random before it models the others: half. (Optuna's
    default, 10, would leave a search of 8 LRs, the default --num-samples, entirely random.)"""
    return max(1, num_samples // 2)


class BayesSearch(Searcher):
    """`fixed` trial configs first, then per config in `searches` (what a search's trials share)
    `num_samples` manual trials, {**search, "lr": TPE's suggestion}, `batch` at a time."""

    def __init__(self, fixed: list[dict], searches: list[dict], num_samples: int, lr_range: tuple[float, float],
                 batch: int, metric: str, mode: str):
        super().__init__(metric=metric, mode=mode)
        self.fixed = [dict(p) for p in fixed]
        self.searches = [dict(s) for s in searches]
        self.num_samples = num_samples
        space = {"lr": optuna.distributions.FloatDistribution(*lr_range, log=True)}
        self.limiters = [
            ConcurrencyLimiter(OptunaSearch(space, metric=metric, mode=mode, sampler=optuna.samplers.TPESampler(
                seed=s["seed"], n_startup_trials=startup_trials(num_samples))), max_concurrent=batch, batch=True)
            for s in self.searches]
        self.suggested = [0] * len(self.searches)
        self.owner: dict[str, int] = {}  # trial id -> the search that suggested it

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # every config is whole: the param_space only describes them (space.param_space)

    def suggest(self, trial_id: str) -> dict | None:
        if self.fixed:
            return self.fixed.pop(0)
        for i, limiter in enumerate(self.limiters):
            if self.suggested[i] < self.num_samples:
                params = limiter.suggest(trial_id)  # None while the search's batch runs
                if params:
                    self.suggested[i] += 1
                    self.owner[trial_id] = i
                    return {**self.searches[i], "lr": params["lr"]}
        return Searcher.FINISHED if sum(self.suggested) == len(self.searches) * self.num_samples else None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.owner:
            self.limiters[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self.owner:
            self.limiters[self.owner[trial_id]].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:  # Ray Tune saves the searcher with the experiment (--resume)
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def record(config: StudyConfig, searches: list[dict], batch: int) -> dict:
    """What study.json says of the Bayesian search before it runs (the LRs are in each trial's params.json)."""
    return {"samples_per_search": config.num_samples, "lr_range": list(config.lr_range), "batch": batch,
            "random_startup_trials": startup_trials(config.num_samples), "sampler": "optuna TPESampler",
            "searches": [{**{d: s[d] for d in DIMENSIONS}, "seed": s["seed"], "sampler_seed": s["seed"]} for s in searches]}
