"""The Bayesian search (--search bayes): the searcher driven by hand, then a real small study."""

from __future__ import annotations

import json
import math

import pytest
from ray.tune.experiment import Experiment
from ray.tune.search import Searcher, SearchGenerator

from study.config import StudyConfig
from study.search import BayesSearch, startup_trials
from study.space import bayes_searches, param_space, plan, trial_points

STUDY = StudyConfig(search="bayes", num_samples=4, lr_range=(1e-5, 1e-1), optimizer=("sgd", "adam"),
                    arms=("finder", "manual", "prodigy"), finder_rules=("valley",))


def searcher(config: StudyConfig = STUDY, batch: int = 2) -> BayesSearch:
    return BayesSearch(trial_points(config), bayes_searches(config), config.num_samples, config.lr_range, batch,
                       "val_acc", "max")


def val_acc(lr: float) -> float:
    """A made-up result with its best at lr = 10^-2.5."""
    return 1.0 - abs(math.log10(lr) + 2.5) / 10


def run(s: BayesSearch, reverse: bool = False, swap=None) -> list[dict]:
    """Every config `s` suggests, each batch's trials ended (in order, or reversed) once none more
    comes; `swap(s)`, if given, replaces the searcher after the first batch of manual trials."""
    out, running, n = [], [], 0
    while True:
        n += 1
        config = s.suggest(f"t{n}")
        if config == Searcher.FINISHED:
            return out
        if config is not None:
            out.append(config)
            running.append((f"t{n}", config))
            continue
        assert running, "the searcher waits while nothing runs"
        for trial_id, c in reversed(running) if reverse else running:
            s.on_trial_result(trial_id, {"val_acc": val_acc(c["lr"] or 1.0), "training_iteration": 1})
            s.on_trial_complete(trial_id, {"val_acc": val_acc(c["lr"] or 1.0)})
        running.clear()
        if swap:
            s, swap = swap(s), None


def test_fixed_points_first_then_each_search_in_batches_whole_configs():
    s, fixed, searches = searcher(), trial_points(STUDY), bayes_searches(STUDY)
    assert [s.suggest(f"f{i}") for i in range(len(fixed))] == fixed
    assert {p["arm"] for p in fixed} == {"finder", "prodigy"}  # the manual trials are the searches'
    batch = [s.suggest(f"b{i}") for i in range(5)]
    assert batch[4] is None  # two searches (sgd, adam) x a batch of 2, then wait
    assert [(c["optimizer"], c["seed"]) for c in batch[:4]] == [("sgd", 0)] * 2 + [("adam", 0)] * 2
    for c, template in zip(batch[:4], [searches[0]] * 2 + [searches[1]] * 2):
        assert list(c) == list(template) and {**c, "lr": template["lr"]} == template  # all but the LR
        assert 1e-5 <= c["lr"] <= 1e-1 and c["arm"] == "manual" and c["finder_rule"] is None
    for i in range(len(fixed)):  # the fixed trials feed no model
        s.on_trial_complete(f"f{i}", {"val_acc": 0.9})
    s.on_trial_complete("b0", {"val_acc": 0.5})
    assert s.suggest("x1") is None  # sgd's batch waits for its other trial
    s.on_trial_complete("b1", {"val_acc": 0.6})
    assert s.suggest("x2")["optimizer"] == "sgd"
    assert [len(l.searcher._ot_study.trials) for l in s.limiters] == [3, 2]  # asked or told: its own trials only


def test_the_same_seed_draws_the_same_lrs_whichever_trial_ends_first():
    a, b = run(searcher()), run(searcher(), reverse=True)
    assert len(a) == plan(STUDY).trials == len(trial_points(STUDY)) + 2 * 4
    assert [c["lr"] for c in a] == [c["lr"] for c in b]
    other = StudyConfig(**{**STUDY.to_dict(), "seed": 1})
    assert [c["lr"] for c in run(searcher(other))][-8:] != [c["lr"] for c in a][-8:]  # seeded by the seed
    manual = [c for c in a if c["arm"] == "manual"]
    assert [(c["optimizer"], c["seed"]) for c in manual] == [("sgd", 0)] * 2 + [("adam", 0)] * 2 + [("sgd", 0)] * 2 + [("adam", 0)] * 2
    # sgd and adam of one seed: independent searches seeded alike, so their first (random) LRs agree
    assert [c["lr"] for c in manual[:2]] == [c["lr"] for c in manual[2:4]]


def test_each_search_is_optunas_tpe_seeded_with_its_seed_random_for_half_its_lrs():
    s = searcher(StudyConfig(search="bayes", num_samples=20, seeds=2, arms=("manual",)))
    samplers = [limiter.searcher._ot_study.sampler for limiter in s.limiters]
    assert [type(x).__name__ for x in samplers] == ["TPESampler"] * 2
    assert startup_trials(20) == 10 == samplers[0]._n_startup_trials and startup_trials(1) == 1
    assert [limiter.max_concurrent for limiter in s.limiters] == [2, 2] and all(l.batch for l in s.limiters)


def test_saved_and_restored_it_goes_on_as_if_never_stopped(tmp_path):
    """What --resume relies on: Ray Tune saves the searcher with the experiment and restores it."""
    def swap(s: BayesSearch) -> BayesSearch:
        s.save(str(tmp_path / "searcher.pkl"))
        restored = searcher()
        restored.restore(str(tmp_path / "searcher.pkl"))
        return restored

    assert [c["lr"] for c in run(searcher(), swap=swap)] == [c["lr"] for c in run(searcher())]


def test_ray_tunes_search_generator_takes_it_with_the_param_space():
    """As Tuner runs it: param_space (the points and the searches, domains where they vary) goes to
    the searcher, which takes it; each trial's config is the suggestion, whole."""
    space = param_space(trial_points(STUDY) + bayes_searches(STUDY))
    assert space["lr"].categories[:2] == [None, 1.0] and space["lr"].categories[2].lower == 1e-5
    assert set(space["arm"].categories) == {"finder", "prodigy", "manual"}
    generator = SearchGenerator(searcher())
    assert generator.set_search_properties("val_acc", "max", space)
    generator.add_configurations([Experiment("bayes", lambda config: None, config=space, num_samples=plan(STUDY).trials)])
    trials = [generator.next_trial() for _ in range(len(trial_points(STUDY)) + 4)]
    assert [t.config for t in trials[:len(trial_points(STUDY))]] == trial_points(STUDY)
    assert all(t.config["arm"] == "manual" and isinstance(t.config["lr"], float) for t in trials[-4:])
    assert generator.next_trial() is None and not generator.is_finished()  # the batches run


@pytest.mark.parametrize("cluster, resources, slots", [
    ({"CPU": 2.0}, {"cpu": 1, "gpu": 0.0}, 2),
    ({"CPU": 16.0, "GPU": 1.0}, {"cpu": 1, "gpu": 0.25}, 4),  # the GPU is the limit
    ({"CPU": 2.0, "GPU": 1.0}, {"cpu": 4, "gpu": 0.25}, 1),  # at least one
    ({"CPU": 3.0, "GPU": 1.0}, {"cpu": 1, "gpu": 0.1}, 3),
])
def test_a_batch_is_as_many_trials_as_the_cluster_runs_at_once(cluster, resources, slots, monkeypatch):
    import ray

    from study.cluster import trial_slots

    monkeypatch.setattr(ray, "cluster_resources", lambda: cluster)
    assert trial_slots(resources) == slots


@pytest.mark.slow
def test_a_real_bayes_study_draws_the_same_lrs_twice(tmp_path):
    from tests.conftest import real_data_dir, run_module

    lrs = []
    for name in ("a", "b"):
        proc = run_module("study.run", "--smoke", "--subset", "640", "--epochs", "1", "--search", "bayes",
                          "--num-samples", "4", "--arms", "finder,manual", "--finder-rules", "valley",
                          "--results-dir", str(tmp_path), "--name", name, "--data-dir", str(real_data_dir()),
                          RAY_OVERRIDE_RESOURCES='{"CPU": 2}', timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        exp = tmp_path / name
        study = json.loads((exp / "study.json").read_text())
        assert [p["arm"] for p in study["trials"]] == ["finder"]
        assert study["bayes"]["batch"] == 2 and study["bayes"]["samples_per_search"] == 4
        configs = [json.loads(p.read_text()) for p in exp.glob("*/params.json")]
        assert sorted(c["arm"] for c in configs) == ["finder"] + ["manual"] * 4
        manual = sorted(c["lr"] for c in configs if c["arm"] == "manual")
        assert all(1e-5 <= lr <= 1e-1 for lr in manual) and len(set(manual)) == 4
        results = [(exp / c.parent.name / "result.json") for c in exp.glob("*/params.json")]
        assert all(r.read_text().strip() for r in results)  # every trial trained
        lrs.append(manual)
    assert lrs[0] == lrs[1]


# Ray Tune's count of its trials, each time one starts
COUNT_AT_START = """
class Watch(tune.Callback):
    seen = []

    def on_trial_start(self, iteration, trials, trial, **info):
        Watch.seen.append(len(trials))
"""


@pytest.mark.slow
def test_a_real_bayes_study_starts_a_whole_batch_at_once(tmp_path):
    """On 4 trial slots a search's batch is 4 trials, suggested together. Ray Tune asks a searcher
    for a trial only while fewer than its pending limit wait for a worker (one, for a searcher other
    than its basic variant generator, unless told otherwise): so the whole batch is Ray Tune's
    before the first of it starts, which is what lets all 4 start together. Counted by Ray Tune's
    own callback in the study's process, not from start times (a worker's start-up can vary by
    seconds on a busy machine)."""
    from tests.conftest import real_data_dir, run_watched

    _, known_at_start = run_watched(COUNT_AT_START, "--smoke", "--subset", "640", "--epochs", "1", "--search", "bayes",
                                    "--num-samples", "4", "--arms", "manual", "--results-dir", str(tmp_path),
                                    "--name", "batch", "--data-dir", str(real_data_dir()),
                                    RAY_OVERRIDE_RESOURCES='{"CPU": 4}')
    assert json.loads((tmp_path / "batch" / "study.json").read_text())["bayes"]["batch"] == 4
    assert known_at_start == [4, 4, 4, 4]
