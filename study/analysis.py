"""Read an experiment directory from disk and compare the LR finder with the manual search.

Pure functions: nothing here prints or writes. `summarize(exp_dir)` returns the dict that
`study.report.write_report` saves as summary.json. Only the files of the on-disk contract
are read: `study.json`, and per trial `params.json`, `history.json` (the trial's own rows,
one per epoch), `result.json` (Ray's log of the same rows), `error.txt`, `lr_finder.json`.
Ray's own state files only tell us that a directory is an experiment.

A study may hold several optimisers ("settings"), seeds, finder rules and a cyclical arm.
Every trial gets an arm key: `finder` (the primary, i.e. first, finder rule), `finder:<rule>`
(another rule), `cyclic` (`cyclic:<rule>` for a non-primary rule) or `manual:<lr>`. Per setting,
`arm_stats` gives each arm's mean and 95 % Student-t interval over its seeds, `manual` is the
manual LR with the best mean validation accuracy, and `paired` compares two arms seed by seed
(scipy's `ttest_rel`). The top-level `finder` and `best_manual` describe one run: the first
setting's first seed.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

DEFAULT_TARGET_ACC = 0.88
STATUSES = ("finished", "pruned", "diverged", "error")
RANGE_TEST_ARMS = ("finder", "cyclic")  # arms whose LR comes from the trial's own range test
DEFAULT_RULE = "steepest"
DEFAULT_OPTIMIZER = "sgd"
CONFIDENCE = 0.95
_CURVE_KEYS = ("lr", "loss", "loss_raw", "loss_lightning")  # lr_finder.json's per-step lists
_RAY_TRIAL_ID = re.compile(r"(?:^|_)([0-9a-f]{5}_\d{5})(?:_|$)")


class NotAnExperiment(Exception):
    """The path is missing, is not a directory, or holds no experiment."""


@dataclass
class TrialRecord:
    name: str                       # the trial's directory name
    path: Path
    params: dict[str, Any]          # params.json: the trial's config (arm, lr, seed, ...)
    df: pd.DataFrame                # one row per epoch report, sorted by training_iteration
    status: str                     # one of STATUSES
    error: str | None = None        # one-line message when status == "error"
    failures: int = 0               # failures recorded in error.txt (retried ones included)
    lr_finder: dict | None = field(default=None, repr=False)  # lr_finder.json, finder and cyclic only
    optimizer: str = DEFAULT_OPTIMIZER  # the setting the trial belongs to
    finder_rule: str | None = None      # finder and cyclic trials: the rule that turned the curve into an LR
    arm_key: str | None = None          # finder, finder:<rule>, cyclic, manual:<lr> (see the module docstring)

    @property
    def arm(self) -> str | None:
        return self.params.get("arm") or _last(self.df, "arm")

    @property
    def seed(self):
        seed = self.params.get("seed")
        return seed if seed is not None else _last(self.df, "seed")

    @property
    def trial_id(self) -> str:
        tid = _last(self.df, "trial_id")
        if tid:
            return str(tid)
        m = _RAY_TRIAL_ID.search(self.name)
        return m.group(1) if m else self.name


# ---------------------------------------------------------------- reading


def is_experiment(exp_dir: Path) -> bool:
    """An experiment dir has study.json, a Ray experiment_state, or a trial subdir."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        return False
    if (exp_dir / "study.json").is_file() or any(exp_dir.glob("experiment_state-*.json")):
        return True
    return any((d / "params.json").is_file() for d in exp_dir.iterdir() if d.is_dir())


def check_experiment(exp_dir: Path) -> Path:
    exp_dir = Path(exp_dir)
    if not exp_dir.exists():
        raise NotAnExperiment(f"{exp_dir}: no such directory")
    if not exp_dir.is_dir():
        raise NotAnExperiment(f"{exp_dir}: not a directory")
    if not is_experiment(exp_dir):
        raise NotAnExperiment(
            f"{exp_dir}: not an experiment directory "
            "(no study.json, no experiment_state-*.json, no trial subdirectory with params.json)"
        )
    return exp_dir


def load_study(exp_dir: Path) -> dict:
    """study.json as a dict ({} when an old experiment has none)."""
    path = Path(exp_dir) / "study.json"
    if not path.is_file():
        return {}
    try:
        study = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise NotAnExperiment(f"{path}: unreadable ({e})") from None
    if not isinstance(study, dict):
        raise NotAnExperiment(f"{path}: not a JSON object")
    return study


def _name_list(value) -> list[str]:
    """A list of names from study.json: a list, or (older studies) one comma-separated string."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


def study_optimizers(config: dict) -> list[str]:
    """The optimisers a study was configured with, in order (old studies: one string)."""
    return _name_list(config.get("optimizer")) or [DEFAULT_OPTIMIZER]


def study_rules(config: dict) -> list[str]:
    """The finder rules, primary first: config `finder_rules`, else the old `finder_rule`, else steepest."""
    return _name_list(config.get("finder_rules")) or _name_list(config.get("finder_rule")) or [DEFAULT_RULE]


def arm_key(arm: str | None, lr: float | None, rule: str | None, primary_rule: str) -> str:
    """finder | finder:<rule> | cyclic | cyclic:<rule> | manual:<lr> (lr with :g)."""
    if arm in RANGE_TEST_ARMS:
        return arm if rule in (None, primary_rule) else f"{arm}:{rule}"
    if arm == "manual":
        return "manual:?" if lr is None else f"manual:{lr:g}"
    return arm or "?"


def read_rows(path: Path) -> list[dict]:
    """result.json: JSON lines. A torn last line (killed writer) is skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_trial_rows(trial_dir: Path) -> list[dict]:
    """The trial's epochs: its own history.json (exactly one row per epoch the weights went
    through), then any later result.json rows not yet copied into the experiment folder (Ray
    syncs trial artifacts every 15 s and at the end; an interrupted study may lag)."""
    rows = read_rows(trial_dir / "result.json")
    history, _ = _read_json(trial_dir / "history.json")  # (None, reason) when missing or torn
    if not history or not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        return rows
    last = max(int(h.get("training_iteration", 0)) for h in history)
    return history + [r for r in rows if int(r.get("training_iteration", 0)) > last]


def rows_to_frame(rows: list[dict]) -> pd.DataFrame:
    """Scalar keys only; one row per training_iteration (a repeat after a restore: last wins)."""
    flat = [{k: v for k, v in r.items() if not isinstance(v, (dict, list))} for r in rows]
    df = pd.DataFrame(flat)
    if df.empty:
        return df
    if "training_iteration" not in df:
        df["training_iteration"] = range(1, len(df) + 1)
    df = df.drop_duplicates("training_iteration", keep="last")
    return df.sort_values("training_iteration", kind="stable").reset_index(drop=True)


def error_message(path: Path) -> tuple[str, int]:
    """(last non-empty line, number of 'Failure #' entries) of Ray's error.txt."""
    text = path.read_text(errors="replace")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    failures = sum(ln.startswith("Failure #") for ln in lines) or 1
    msg = [ln for ln in lines if not ln.startswith("Failure #")]
    return (msg[-1] if msg else "error.txt is empty"), failures


def trial_status(rows: list[dict], df: pd.DataFrame, has_error: bool, epochs: int) -> str:
    """error / diverged / finished / pruned, from the rows alone.

    A trial that Ray retried after a failure (error.txt present) and that then
    finished or diverged keeps that status; otherwise error.txt means error.
    """
    diverged = any(r.get("diverged") is True for r in rows)
    finished = not df.empty and int(df["training_iteration"].iloc[-1]) >= epochs
    if diverged:
        return "diverged"
    if finished:
        return "finished"
    if has_error or df.empty:
        return "error"
    return "pruned"


def _read_json(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text()), None
    except (OSError, ValueError) as e:
        return None, f"unreadable {path.name}: {e}"


def load_trials(exp_dir: Path, epochs: int | None = None) -> list[TrialRecord]:
    """Every trial subdir (one with params.json), sorted: finder first, then manual by lr.

    `epochs` is the number of epochs a finished trial has; by default study.json's
    config.epochs, or the largest training_iteration seen when there is no study.json.
    """
    exp_dir = check_experiment(exp_dir)
    config = load_study(exp_dir).get("config") or {}
    if epochs is None:
        epochs = config.get("epochs")
    raw = []
    for d in sorted(p for p in exp_dir.iterdir() if (p / "params.json").is_file()):
        params, perr = _read_json(d / "params.json")
        if not isinstance(params, dict):
            params, perr = {}, perr or "params.json is not a JSON object"
        rows = read_trial_rows(d)
        finder, _ = _read_json(d / "lr_finder.json") if (d / "lr_finder.json").is_file() else (None, None)
        raw.append((d, params, perr, rows, rows_to_frame(rows), finder if isinstance(finder, dict) else None))
    if epochs is None:
        epochs = max((int(df["training_iteration"].max()) for *_, df, _ in raw if not df.empty), default=1)

    trials = []
    for d, params, perr, rows, df, finder in raw:
        err_file = d / "error.txt"
        msg, failures = error_message(err_file) if err_file.is_file() else (None, 0)
        status = trial_status(rows, df, err_file.is_file() or perr is not None, int(epochs))
        if status == "error":
            msg = perr or msg or "no results"
        else:
            msg = None
        trials.append(TrialRecord(d.name, d, params, df, status, msg, failures, finder))
    optimizers, rules = study_optimizers(config), study_rules(config)
    for t in trials:
        t.optimizer = str(t.params.get("optimizer") or _last(t.df, "optimizer") or optimizers[0])
        if t.arm in RANGE_TEST_ARMS:
            t.finder_rule = str(t.params.get("finder_rule") or _last(t.df, "finder_rule")
                                or (t.lr_finder or {}).get("rule") or rules[0])
        manual_lr = _num(t.params.get("lr")) if t.arm == "manual" else None
        t.arm_key = arm_key(t.arm, manual_lr if manual_lr is not None else _trial_lr(t), t.finder_rule, rules[0])
    return sorted(trials, key=lambda t: _sort_key(t, optimizers, rules))


def _rank(value, order: list) -> tuple:
    return (order.index(value), "") if value in order else (len(order), str(value))


def _sort_key(t: TrialRecord, optimizers: list[str], rules: list[str]):
    """Setting, then finder, cyclic, manual; range-test arms by rule and seed, manual by LR and seed."""
    arm = t.arm or ""
    lr, seed = _trial_lr(t), t.seed
    lr_key = (lr is None, lr or 0.0)
    seed_key = (seed is None, seed if isinstance(seed, (int, float)) else 0)
    within = (*_rank(t.finder_rule, rules), *seed_key, *lr_key) if arm in RANGE_TEST_ARMS else (*lr_key, *seed_key)
    return (*_rank(t.optimizer, optimizers), _rank(arm, ["finder", "cyclic", "manual"]), *within, t.trial_id)


# ---------------------------------------------------------------- numbers


def _num(x) -> float | None:
    """A plain finite float, or None (for None, NaN, inf, non-numbers)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _last(df: pd.DataFrame, col: str):
    if df.empty or col not in df:
        return None
    v = df[col].iloc[-1]
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _finder_time(t: TrialRecord) -> float | None:
    ft = _num(_last(t.df, "finder_time_s"))
    if ft is None and t.lr_finder:
        ft = _num(t.lr_finder.get("finder_time_s"))
    return ft


def _trial_lr(t: TrialRecord) -> float | None:
    """The trial's LR: the trained one; for the cyclic arm the top of its cycle (cyclic_max_lr)."""
    if t.arm == "cyclic":
        lr = _num(_last(t.df, "cyclic_max_lr"))
        if lr is None and t.lr_finder:
            lr = _num(t.lr_finder.get("cyclic_max_lr"))
    else:
        lr = _num(_last(t.df, "lr"))
    if lr is None:
        lr = _num(t.params.get("lr"))
    if lr is None and t.lr_finder:
        lr = _num(t.lr_finder.get("suggestion"))
    return lr


def time_to_target(t: TrialRecord, target_acc: float) -> float | None:
    """Seconds until val_acc first reached target_acc (finder: its own time included)."""
    if t.df.empty or "val_acc" not in t.df or "train_time_s" not in t.df:
        return None
    hit = t.df[pd.to_numeric(t.df["val_acc"], errors="coerce") >= target_acc]
    if hit.empty:
        return None
    secs = _num(hit["train_time_s"].iloc[0])
    if secs is None:
        return None
    return secs + ((_finder_time(t) or 0.0) if t.arm in RANGE_TEST_ARMS else 0.0)


_TRIAL_KEYS = ("trial_id", "arm", "arm_key", "optimizer", "finder_rule", "lr", "seed", "status", "epochs",
               "time_s", "val_acc", "val_loss", "test_acc", "test_loss", "time_to_target_s", "best_val_acc",
               "train_time_s", "finder_time_s", "cyclic_min_lr", "cyclic_max_lr", "node_id", "node_ip",
               "failures", "error", "dir")


_OWN_PARAMS = ("arm", "lr", "seed", "optimizer", "finder_rule")  # params with a column of their own


def trial_summary(t: TrialRecord, target_acc: float) -> dict:
    """One trial as a plain dict (a row of summary.json's `trials` and of comparison.csv)."""
    train = _num(_last(t.df, "train_time_s"))
    ftime = _finder_time(t) if t.arm in RANGE_TEST_ARMS else None
    time_s = None if train is None and ftime is None else (train or 0.0) + (ftime or 0.0)
    val = pd.to_numeric(t.df["val_acc"], errors="coerce") if "val_acc" in t.df else pd.Series(dtype=float)
    out = {
        "trial_id": t.trial_id, "arm": t.arm, "arm_key": t.arm_key, "optimizer": t.optimizer,
        "finder_rule": t.finder_rule, "lr": _trial_lr(t), "seed": t.seed,
        "status": t.status, "epochs": len(t.df), "time_s": time_s,
        "val_acc": _num(_last(t.df, "val_acc")), "val_loss": _num(_last(t.df, "val_loss")),
        "test_acc": _num(_last(t.df, "test_acc")), "test_loss": _num(_last(t.df, "test_loss")),
        "time_to_target_s": time_to_target(t, target_acc), "best_val_acc": _num(val.max()),
        "train_time_s": train, "finder_time_s": ftime,
        "cyclic_min_lr": _num(_last(t.df, "cyclic_min_lr")) if t.arm == "cyclic" else None,
        "cyclic_max_lr": _num(_last(t.df, "cyclic_max_lr")) if t.arm == "cyclic" else None,
        "node_id": _last(t.df, "node_id"), "node_ip": _last(t.df, "node_ip"),
        "failures": t.failures, "error": t.error, "dir": t.name,
    }
    for k, v in t.params.items():  # carry extra params
        if k not in _OWN_PARAMS and isinstance(v, (str, int, float, bool, type(None))):
            out[k if k not in out else f"param_{k}"] = v
    return out


# ---------------------------------------------------------------- summary


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _lr(lr: float | None) -> str:
    return "?" if lr is None else f"{lr:.3g}"


def _acc(arm: dict) -> str:
    if arm["test_acc"] is not None:
        return f"{_pct(arm['test_acc'])} test accuracy"
    return "no test accuracy" if arm["val_acc"] is None else f"{_pct(arm['val_acc'])} validation accuracy"


def _why_not_finished(t: TrialRecord | None) -> str:
    if t is None:
        return "There is no finder trial in this experiment"
    if t.status == "error":
        return f"The finder trial did not finish (error: {t.error})"
    if t.status == "diverged":
        return f"The finder trial did not finish (diverged after {len(t.df)} epochs)"
    return f"The finder trial did not finish (pruned after {len(t.df)} epochs)"


def verdict(finder: dict | None, best: dict | None, finder_trial: TrialRecord | None, n_manual: int) -> str:
    """One sentence: which arm is more accurate on test, by how much, and the time-cost ratio."""
    if finder is None or best is None:
        parts = []
        if finder is None:
            parts.append(_why_not_finished(finder_trial))
        if best is None:
            parts.append(f"no manual trial finished (of {n_manual})" if n_manual else "there is no manual trial")
        if finder is not None:
            parts.insert(0, f"The LR finder (lr={_lr(finder['lr'])}) reached {_acc(finder)}")
        if best is not None:
            parts.append(f"the best manual LR (lr={_lr(best['lr'])}) reached {_acc(best)}")
        s = "; ".join(parts) + ", so the two arms cannot be compared."
        return s[0].upper() + s[1:]
    metric = "test" if finder["test_acc"] is not None and best["test_acc"] is not None else "validation"
    fa, ba = (finder["test_acc"], best["test_acc"]) if metric == "test" else (finder["val_acc"], best["val_acc"])
    diff = round(100 * (fa - ba), 2)
    rel = (f"{abs(diff):.2f} points {'above' if diff > 0 else 'below'}" if diff else "the same as")
    s = (f"The LR finder (lr={_lr(finder['lr'])}) reached {_pct(fa)} {metric} accuracy, {rel} "
         f"the best manual LR (lr={_lr(best['lr'])}, {_pct(ba)})")
    ft, st = finder["total_time_s"], best["search_time_s"]
    if ft is not None and st:
        s += (f", at {ft / st:.2f}x the time cost ({ft:.1f} s vs {st:.1f} s for the whole manual search)")
    return s + "."


# ---------------------------------------------------------------- statistics over seeds


def describe(values) -> dict:
    """n, mean, sample std, 95 % Student-t interval of the mean (scipy), min, max and the values.

    Non-finite values and None are dropped. ci95 is null for n < 2; with zero spread it is [mean, mean].
    """
    v = [x for x in (_num(x) for x in values) if x is not None]
    n = len(v)
    out = {"n": n, "mean": None, "ci95": None, "std": None, "min": None, "max": None, "values": v}
    if not n:
        return out
    a = np.asarray(v, dtype=float)
    mean = float(a.mean())
    out.update(mean=mean, min=float(a.min()), max=float(a.max()))
    if n >= 2:
        sem = float(stats.sem(a))
        out["std"] = float(a.std(ddof=1))
        if sem > 0:
            lo, hi = stats.t.interval(CONFIDENCE, n - 1, loc=mean, scale=sem)
            out["ci95"] = [float(lo), float(hi)]
        else:
            out["ci95"] = [mean, mean]
    return out


def _seed_order(seed) -> tuple:
    return (seed is None, seed if isinstance(seed, (int, float)) else 0, str(seed))


ARM_METRICS = ("test_acc", "test_loss", "val_acc", "val_loss", "time_s")


def arm_stats(rows: list[dict]) -> dict:
    """Statistics of one arm's trials (one per seed) in one setting.

    `n` and every metric count finished trials only; `lr` counts every trial that has an LR (a
    finder trial that diverged still shows the LR it picked). Every statistic is `describe`'s dict.
    """
    done = sorted((r for r in rows if r["status"] == "finished"), key=lambda r: _seed_order(r["seed"]))
    with_lr = sorted((r for r in rows if r["lr"] is not None), key=lambda r: _seed_order(r["seed"]))
    lr = describe(r["lr"] for r in with_lr)
    lr["geomean"] = float(np.exp(np.mean(np.log(lr["values"])))) if lr["values"] and lr["min"] > 0 else None
    lr["seeds"] = [r["seed"] for r in with_lr]
    out = {"n": len(done), "n_trials": len(rows),
           "n_by_status": {st: sum(r["status"] == st for r in rows) for st in STATUSES},
           "seeds": [r["seed"] for r in done], "lr": lr}
    for m in ARM_METRICS:
        out[m] = describe(r[m] for r in done)
    if any(r["arm"] in RANGE_TEST_ARMS for r in rows):
        out["rule"] = next((r["finder_rule"] for r in rows if r["finder_rule"]), None)
        out["finder_time_s"] = describe(r["finder_time_s"] for r in done)
    return out


def _by_seed(rows: list[dict], metric: str) -> dict:
    out = {}
    for r in rows:  # first finished trial per seed
        if r["status"] == "finished" and _num(r[metric]) is not None:
            out.setdefault(r["seed"], float(r[metric]))
    return out


def paired(rows_a: list[dict], rows_b: list[dict], against: str, metric: str = "test_acc") -> dict:
    """Arm a minus arm b, seed by seed (seeds where both finished): mean, 95 % t-interval, ttest_rel p."""
    a, b = _by_seed(rows_a, metric), _by_seed(rows_b, metric)
    seeds = sorted(set(a) & set(b), key=_seed_order)
    x, y = [a[s] for s in seeds], [b[s] for s in seeds]
    diff = describe(xi - yi for xi, yi in zip(x, y))
    p_value = None
    if len(seeds) >= 2:
        with warnings.catch_warnings():  # zero-spread differences warn; their p is NaN or 0
            warnings.simplefilter("ignore")
            p_value = _num(stats.ttest_rel(x, y).pvalue)  # NaN (all differences 0) -> None
    return {f"{metric}_diff": diff, "p_value": p_value, "n": len(seeds), "seeds": seeds, "against": against}


def best_manual_key(arms: dict) -> str | None:
    """The manual LR with the best mean validation accuracy (ties: lower mean val loss, then lower LR)."""
    cands = [(k, a) for k, a in arms.items() if k.startswith("manual:") and a["val_acc"]["mean"] is not None]
    if not cands:
        return None
    def key(item):
        k, a = item
        loss = a["val_loss"]["mean"]
        return (-a["val_acc"]["mean"], math.inf if loss is None else loss, a["lr"]["mean"] or 0.0, k)
    return min(cands, key=key)[0]


def setting_summary(optimizer: str, rows: list[dict]) -> dict:
    """Arms, best manual LR, paired comparisons, compute and verdict for one optimiser's trials."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["arm_key"], []).append(r)
    best = best_manual_key({k: arm_stats(g) for k, g in groups.items() if k.startswith("manual:")})
    arms: dict[str, dict] = {}
    for key, group in groups.items():  # rows are sorted: finder*, cyclic*, manual by LR
        if key.startswith("manual:") and best is not None and "manual" not in arms:
            arms["manual"] = {**arm_stats(groups[best]), "chosen": best}
        arms[key] = arm_stats(group)
    best_rows = groups.get(best, [])
    range_arms = [k for k in groups if k.split(":")[0] in RANGE_TEST_ARMS]
    vs_best = {k: paired(groups[k], best_rows, best) for k in range_arms} if best else {}
    vs_finder = {k: paired(groups[k], groups["finder"], "finder") for k in range_arms
                 if k != "finder" and "finder" in groups}

    manual = [r for r in rows if r["arm"] == "manual"]
    per_seed: dict = {}
    for r in manual:  # compute of the whole manual search, per seed (every status counts)
        per_seed[r["seed"]] = per_seed.get(r["seed"], 0.0) + (r["time_s"] or 0.0)
    finder_time = arms["finder"]["time_s"]["mean"] if "finder" in arms else None
    search_time = float(np.mean(list(per_seed.values()))) if per_seed else None
    compute = {"finder_time_s": finder_time, "manual_search_time_s": search_time,
               "manual_search_time_s_by_seed": [[s, per_seed[s]] for s in sorted(per_seed, key=_seed_order)],
               "manual_over_finder": search_time / finder_time if finder_time and search_time else None}
    out = {"optimizer": optimizer, "n_trials": len(rows),
           "seeds": sorted({r["seed"] for r in rows}, key=_seed_order),
           "best_manual": best, "arms": arms, "paired": vs_best.get("finder"),
           "vs_best_manual": vs_best, "vs_finder": vs_finder, "compute": compute}
    out["verdict"] = setting_verdict(out, groups)
    out["verdicts"] = {k: setting_verdict(out, groups, k) for k in range_arms} or {"finder": out["verdict"]}
    return out


def _status_counts(a: dict) -> str:
    return ", ".join(f"{n} {st}" for st, n in a["n_by_status"].items() if n and st != "finished")


def _first_error(rows: list[dict]) -> str:
    err = next((r["error"] for r in rows if r.get("error")), None)
    return f", first error: {err}" if err else ""


def _arm_label(key: str, arm: dict | None) -> str:
    """'finder (valley)', 'cyclic (lightning)': an arm named with the rule that chose its LR."""
    base = key.split(":")[0]
    rule = (arm or {}).get("rule") or (key.split(":")[1] if ":" in key else None)
    return f"{base} ({rule})" if rule else base


def setting_verdict(setting: dict, groups: dict[str, list[dict]], key: str = "finder") -> str:
    """'sgd: finder (valley) vs best manual (lr=0.01): +0.40 ± 0.60 points of test accuracy over 3 seeds ...'.

    `key`: the range-test arm compared with the best manual LR (default: the primary finder arm)."""
    opt, arms, best = setting["optimizer"], setting["arms"], setting["best_manual"]
    if not setting["n_trials"]:
        return f"{opt}: no trials."
    finder = arms.get(key)
    label = _arm_label(key, finder)
    problems = []
    if finder is None:
        problems.append(f"there is no {label} trial")
    elif finder["n"] == 0:
        problems.append(f"no {label} trial finished (of {finder['n_trials']}: {_status_counts(finder)}"
                        f"{_first_error(groups[key])})")
    manual = [r for k, g in groups.items() if k.startswith("manual:") for r in g]
    if best is None:
        problems.append(f"no manual trial finished (of {len(manual)})" if manual else "there is no manual trial")
    if problems:
        return f"{opt}: " + "; ".join(problems) + f", so {label} and best manual cannot be compared."
    lr = arms[best]["lr"]["mean"]
    pair = setting["vs_best_manual"][key]
    head = f"{opt}: {label} vs best manual (lr={_lr(lr)})"
    if pair["n"] == 0:
        return (f"{head}: they finished on no common seed ({label}: {_seeds(finder['seeds'])}; "
                f"manual: {_seeds(arms[best]['seeds'])}), so they cannot be compared seed by seed.")
    d = pair["test_acc_diff"]
    s = f"{head}: {100 * d['mean']:+.2f}"
    if d["ci95"] is not None:
        s += f" ± {100 * (d['ci95'][1] - d['ci95'][0]) / 2:.2f}"
    s += f" points of test accuracy over {pair['n']} seed{'s' if pair['n'] != 1 else ''}"
    if pair["p_value"] is not None:
        s += f" (paired t-test p = {pair['p_value']:.2g})"
    elif pair["n"] >= 2 and d["std"] == 0:
        s += " (the same difference on every seed)"
    c = setting["compute"]
    own, search = finder["time_s"]["mean"], c["manual_search_time_s"]
    if own and search:
        r = search / own
        s += (f", {r:.1f}x less compute" if r >= 1 else f", {1 / r:.1f}x more compute") + (
            f" ({own:.1f} s vs {search:.1f} s for the whole manual search, per seed)")
    if finder["n"] < finder["n_trials"]:
        s += (f"; {finder['n_trials'] - finder['n']} of {finder['n_trials']} {label} trials did not finish "
              f"({_status_counts(finder)})")
    return s + "."


def _seeds(seeds: list) -> str:
    return "seed " + ", ".join(map(str, seeds)) if seeds else "none"


# ---------------------------------------------------------------- summary


def summarize(exp_dir: Path, target_acc: float | None = None) -> dict:
    """The summary of an experiment directory (exactly what goes to summary.json).

    `settings` holds one entry per optimiser (arms, paired, verdict, ...); the top-level `arms`
    and `paired` are the first setting's, `verdict` joins the settings' verdicts. `finder`,
    `best_manual`, `manual_search`, `time_cost_ratio` and `lr_finder` describe one run: the first
    setting's first seed (study.json's `seed` when present, else the lowest).
    """
    exp_dir = check_experiment(exp_dir)
    study = load_study(exp_dir)
    config = study.get("config") or {}
    if target_acc is None:
        target_acc = _num(config.get("target_acc"))
        target_acc = DEFAULT_TARGET_ACC if target_acc is None else target_acc
    trials = load_trials(exp_dir)
    rows = [trial_summary(t, target_acc) for t in trials]

    optimizers = study_optimizers(config)
    optimizers += sorted({r["optimizer"] for r in rows} - set(optimizers))
    settings = {o: setting_summary(o, [r for r in rows if r["optimizer"] == o]) for o in optimizers}
    for o in optimizers:
        settings[o]["range_tests"] = range_tests([t for t in trials if t.optimizer == o])
    first = settings[optimizers[0]]
    seed0 = config.get("seed") if config.get("seed") in first["seeds"] else (first["seeds"] or [None])[0]
    run = [(t, r) for t, r in zip(trials, rows) if r["optimizer"] == optimizers[0] and r["seed"] == seed0]

    finder_trials = [t for t, r in run if r["arm_key"] == "finder"]
    ft = next((t for t in finder_trials if t.status == "finished"), finder_trials[0] if finder_trials else None)
    finder = None
    if ft is not None and ft.status == "finished":
        r = rows[trials.index(ft)]
        finder = {"lr": r["lr"], "finder_time_s": r["finder_time_s"], "train_time_s": r["train_time_s"],
                  "total_time_s": r["time_s"], "val_acc": r["val_acc"], "val_loss": r["val_loss"],
                  "test_acc": r["test_acc"], "test_loss": r["test_loss"], "status": r["status"],
                  "trial_id": r["trial_id"], "time_to_target_s": r["time_to_target_s"]}

    manual = [(t, r) for t, r in run if t.arm == "manual"]
    starts = [_num(_first_valid(t.df, "trial_start_ts")) for t, _ in manual]
    ends = [_num(_last(t.df, "report_ts")) for t, _ in manual]
    starts, ends = [s for s in starts if s is not None], [e for e in ends if e is not None]
    search = {
        "n_trials": len(manual),
        "n_by_status": {s: sum(r["status"] == s for _, r in manual) for s in STATUSES},
        "search_time_s": sum(r["time_s"] or 0.0 for _, r in manual),
        "search_wall_s": (max(ends) - min(starts)) if starts and ends else None,
    }
    done = [r for _, r in manual if r["status"] == "finished" and r["val_acc"] is not None]
    best = None
    if done:
        b = min(done, key=lambda r: (-r["val_acc"], r["val_loss"] if r["val_loss"] is not None else math.inf))
        best = {"lr": b["lr"], "train_time_s": b["train_time_s"], "search_time_s": search["search_time_s"],
                "search_wall_s": search["search_wall_s"], "val_acc": b["val_acc"], "val_loss": b["val_loss"],
                "test_acc": b["test_acc"], "test_loss": b["test_loss"], "trial_id": b["trial_id"],
                "time_to_target_s": b["time_to_target_s"], "seed": b["seed"]}

    lr_finder = None
    if ft is not None and ft.lr_finder:
        lr_finder = {k: v for k, v in ft.lr_finder.items() if k not in _CURVE_KEYS}
    summary = {
        "experiment": exp_dir.name,
        "target_acc": target_acc,
        "verdict": " ".join(st["verdict"] for st in settings.values()),
        "optimizers": optimizers,
        "finder_rules": study_rules(config),
        "seeds": sorted({r["seed"] for r in rows}, key=_seed_order),
        "arms": first["arms"],
        "paired": first["paired"],
        "settings": settings,
        "first_run": {"optimizer": optimizers[0], "seed": seed0},
        "first_run_verdict": verdict(finder, best, ft, len(manual)),
        "time_cost_ratio": (finder["total_time_s"] / search["search_time_s"] if finder and best
                            and finder["total_time_s"] is not None and search["search_time_s"] else None),
        "finder": finder,
        "best_manual": best,
        "manual_search": search,
        "lr_finder": lr_finder,
        "trials": rows,
        "config": config,
        "versions": study.get("versions") or {},
        "started_at": study.get("started_at"),
    }
    return clean(summary)


def range_tests(trials: list[TrialRecord]) -> list[dict]:
    """One range test per seed (every finder and cyclic trial of a seed reads the same curve): every
    rule's pick on the true curve (`suggestions`) and on Lightning's recorded one."""
    out: dict = {}
    for t in trials:
        f = t.lr_finder
        if t.arm in RANGE_TEST_ARMS and f and isinstance(f.get("suggestions"), dict) and t.seed not in out:
            out[t.seed] = {"seed": t.seed, "points": len(f.get("lr") or []), "finder_time_s": _num(f.get("finder_time_s")),
                           "suggestions": f["suggestions"],
                           "suggestions_lightning_curve": f.get("suggestions_lightning_curve") or {}}
    return [out[s] for s in sorted(out, key=_seed_order)]


def _first_valid(df: pd.DataFrame, col: str):
    if df.empty or col not in df:
        return None
    s = df[col].dropna()
    return s.iloc[0] if len(s) else None


def clean(obj):
    """Plain JSON: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(obj, dict):
        return {str(k): clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj
