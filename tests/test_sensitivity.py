"""study.sensitivity's table and its refusals (the range tests themselves: tests/test_study.py)."""

from __future__ import annotations

from study.sensitivity import main, same_picks, table
from trainables.finder_rules import RULES


def row(setting, seed, **picks):
    suggestions = {rule: picks.get(rule, 0.01) for rule in RULES}
    return {"task": "fashion-mlp", "optimizer": "sgd", "setting": setting, "seed": seed, "points": 100 - seed,
            "suggestions": suggestions, "suggestions_lightning_curve": {**suggestions, "steepest": 0.5}}


def test_table_gives_median_and_range_over_seeds():
    rows = [row("A", 0, valley=0.001), row("A", 1, valley=0.004), row("A", 2, valley=0.002, slide=None)]
    lines = table(rows).splitlines()
    assert lines[0].startswith("| task | optimizer | setting | points | lightning | steepest | valley |")
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    assert cells[:4] == ["fashion-mlp", "sgd", "A", "98-100"]
    assert cells[4 + RULES.index("valley")] == "0.002 [0.001, 0.004]"
    assert cells[4 + RULES.index("slide")] == "0.01 [0.01, 0.01] (1 none)"
    assert cells[-1] == "0.5 [0.5, 0.5]"  # steepest on Lightning's own curve


def test_same_picks_names_rules_that_agree_on_every_curve():
    rows = [row("A", 0, valley=0.001, minimum=0.002, steep=0.003, slide=0.004, lightning=0.005),
            row("A", 1, valley=0.001, minimum=0.002, steep=0.003, slide=0.004, lightning=0.005, steepest=0.003)]
    assert same_picks(rows) == []
    rows[0]["suggestions"]["steepest"] = 0.003
    assert same_picks(rows) == [("steepest", "steep")]


def test_bad_settings_are_one_line_and_exit_2(capsys, tmp_path):
    assert main(["--seeds", "0", "--results-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["study.sensitivity: error: --seeds must be at least 1, got 0"]
    assert main(["--data-dir", str(tmp_path / "nothing"), "--results-dir", str(tmp_path)]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
