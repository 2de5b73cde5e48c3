"""Read an experiment directory from disk and compare the LR finder with the manual search.

Pure functions: nothing here prints or writes. `summarize(exp_dir)` returns the dict that
`study.report.write_report` saves as summary.json. Only the files of the on-disk contract
are read: `study.json`, and per trial `params.json`, `result.json`, `error.txt`,
`lr_finder.json`. Ray's own state files only tell us that a directory is an experiment.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

DEFAULT_TARGET_ACC = 0.88
STATUSES = ("finished", "pruned", "diverged", "error")
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
    lr_finder: dict | None = field(default=None, repr=False)  # lr_finder.json, finder only

    @property
    def arm(self) -> str | None:
        return self.params.get("arm") or _last(self.df, "arm")

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
    if epochs is None:
        epochs = load_study(exp_dir).get("config", {}).get("epochs")
    raw = []
    for d in sorted(p for p in exp_dir.iterdir() if (p / "params.json").is_file()):
        params, perr = _read_json(d / "params.json")
        if not isinstance(params, dict):
            params, perr = {}, perr or "params.json is not a JSON object"
        rows = read_rows(d / "result.json")
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
    return sorted(trials, key=_sort_key)


def _sort_key(t: TrialRecord):
    arm = t.arm or ""
    rank = {"finder": 0, "manual": 1}.get(arm, 2)
    lr = _trial_lr(t)
    seed = t.params.get("seed")
    return (rank, arm, lr is None, lr or 0.0, seed is None, seed if isinstance(seed, (int, float)) else 0, t.trial_id)


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
    return secs + ((_finder_time(t) or 0.0) if t.arm == "finder" else 0.0)


_TRIAL_KEYS = ("trial_id", "arm", "lr", "seed", "status", "epochs", "time_s", "val_acc", "val_loss",
               "test_acc", "test_loss", "time_to_target_s", "best_val_acc", "train_time_s",
               "finder_time_s", "node_id", "node_ip", "failures", "error", "dir")


def trial_summary(t: TrialRecord, target_acc: float) -> dict:
    train = _num(_last(t.df, "train_time_s"))
    ftime = _finder_time(t) if t.arm == "finder" else None
    time_s = None if train is None and ftime is None else (train or 0.0) + (ftime or 0.0)
    val = pd.to_numeric(t.df["val_acc"], errors="coerce") if "val_acc" in t.df else pd.Series(dtype=float)
    out = {
        "trial_id": t.trial_id, "arm": t.arm, "lr": _trial_lr(t), "seed": t.params.get("seed"),
        "status": t.status, "epochs": len(t.df), "time_s": time_s,
        "val_acc": _num(_last(t.df, "val_acc")), "val_loss": _num(_last(t.df, "val_loss")),
        "test_acc": _num(_last(t.df, "test_acc")), "test_loss": _num(_last(t.df, "test_loss")),
        "time_to_target_s": time_to_target(t, target_acc), "best_val_acc": _num(val.max()),
        "train_time_s": train, "finder_time_s": ftime,
        "node_id": _last(t.df, "node_id"), "node_ip": _last(t.df, "node_ip"),
        "failures": t.failures, "error": t.error, "dir": t.name,
    }
    for k, v in t.params.items():  # carry extra params (optimizer, finder_rule, ...)
        if k not in ("arm", "lr", "seed") and isinstance(v, (str, int, float, bool, type(None))):
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


def summarize(exp_dir: Path, target_acc: float | None = None) -> dict:
    """The summary of an experiment directory (exactly what goes to summary.json)."""
    exp_dir = check_experiment(exp_dir)
    study = load_study(exp_dir)
    config = study.get("config") or {}
    if target_acc is None:
        target_acc = _num(config.get("target_acc"))
        target_acc = DEFAULT_TARGET_ACC if target_acc is None else target_acc
    trials = load_trials(exp_dir)
    rows = [trial_summary(t, target_acc) for t in trials]

    finder_trials = [t for t in trials if t.arm == "finder"]
    ft = next((t for t in finder_trials if t.status == "finished"), finder_trials[0] if finder_trials else None)
    finder = None
    if ft is not None and ft.status == "finished":
        r = rows[trials.index(ft)]
        finder = {"lr": r["lr"], "finder_time_s": r["finder_time_s"], "train_time_s": r["train_time_s"],
                  "total_time_s": r["time_s"], "val_acc": r["val_acc"], "val_loss": r["val_loss"],
                  "test_acc": r["test_acc"], "test_loss": r["test_loss"], "status": r["status"],
                  "trial_id": r["trial_id"], "time_to_target_s": r["time_to_target_s"]}

    manual = [(t, r) for t, r in zip(trials, rows) if t.arm == "manual"]
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
        lr_finder = {k: v for k, v in ft.lr_finder.items() if k not in ("lr", "loss")}
    summary = {
        "experiment": exp_dir.name,
        "target_acc": target_acc,
        "verdict": verdict(finder, best, ft, len(manual)),
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
