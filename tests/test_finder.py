"""The LR finder: each rule on hand-made curves whose pick is worked out by hand here, and the
range test's true curve recovered from a real `lr_find` (real Lightning, tiny data)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.tuner.lr_finder import _LRCallback

from tests.test_model import study_module, tiny_loaders, trainer
from trainables.finder import BETA, ema_debiased, range_test
from trainables.finder_rules import RULES, suggest


def test_ema_is_debiased_from_the_first_step():
    # beta 0.5: avg0 = 0.5*2 = 1, / (1 - 0.5) = 2; avg1 = 0.5*1 + 0.5*4 = 2.5, / (1 - 0.25) = 10/3.
    assert ema_debiased([2.0, 4.0], beta=0.5) == pytest.approx([2.0, 10 / 3])
    assert BETA == _LRCallback(100, 4.0).beta  # the beta Lightning's range test smooths with


# -- Lightning's rules: window [10:-1] ---------------------------------------------------------------
# 14 points; the window is indices 10, 11, 12 (13 is skipped at the end).
LRS14 = [0.01 * (i + 1) for i in range(10)] + [1.0, 1.1, 10.0, 20.0]
LOSS14 = [3.0] * 10 + [3.0, 2.5, 0.0, 9.0]


def test_steepest_is_lightnings_rule_before_2_5_3_the_gradient_along_the_index():
    # np.gradient([3, 2.5, 0]) = [-0.5, -1.5, -2.5]: the last, index 12.
    assert suggest("steepest", LRS14, LOSS14, 100) == 10.0


def test_steepest_keeps_lightnings_index_shift_after_a_dropped_nan():
    lrs = [float(i) for i in range(1, 17)]
    losses = [9.0] * 10 + [5.0, 4.0, 1.0, 0.5, 0.4, 9.0]
    # window [5, 4, 1, 0.5, 0.4], np.gradient = [-1, -2, -1.75, -0.3, -0.1]: index 1 -> point 11.
    assert suggest("steepest", lrs, losses, 100) == 12.0
    # With point 10 NaN the window is [4, 1, 0.5, 0.4] -> argmin 0, and Lightning adds skip_begin
    # without correcting for the dropped point: point 10 (the NaN's own LR), not point 11.
    losses[10] = float("nan")
    assert suggest("steepest", lrs, losses, 100) == 11.0


def test_lightning_rule_is_the_installed_lightnings_gradient_along_the_linear_lr():
    # Along the LR: at 1.0 the one-sided (2.5 - 3) / 0.1 = -5; at 1.1 the second-order non-uniform
    # difference (0.01*0 - 79.21*3 + 79.2*2.5) / (0.1*8.9*9) = -4.95; at 10, (0 - 2.5) / 8.9 = -0.28.
    assert suggest("lightning", LRS14, LOSS14, 100) == 1.0
    assert suggest("lightning", LRS14[:11], LOSS14[:11], 100) is None  # fewer than 2 points


# -- fastai's rules: window [num_it//10 : -5], cut at the first NaN -----------------------------------
# num_it = 10: the window drops point 0 and the last 5 points.
WINDOW = [5.0, 6.0, 4.0, 3.0, 2.0, 7.0, 1.5]
LRS_F = [10.0 ** -(8 - i) for i in range(len(WINDOW) + 6)]  # powers of ten: equal steps in log LR
LOSS_F = [9.0] + WINDOW + [8.0] * 5


def test_valley_is_fastais_longest_descent_about_its_middle():
    # Longest strictly decreasing subsequence of the window: 5, 4, 3, 2, 1.5 (window indices
    # 0, 2, 3, 4, 6), length 5, ending at 6; fastai sets max_start = 6 - 5 = 1. sections = 5/3,
    # index = 1 + int(1.67) + int(0.83) = 2 -> window point 2 = curve point 3.
    # (Two thirds of the way down the run, 0 -> 6, would be window point 4.)
    assert suggest("valley", LRS_F, LOSS_F, 10) == LRS_F[3]


def test_fastai_rules_cut_the_window_at_its_first_nan():
    losses = list(LOSS_F)
    losses[5] = float("nan")  # window point 4: the window becomes 5, 6, 4, 3
    # longest descent 5, 4, 3 ending at 3, max_start = 3 - 3 = 0; sections 1: index 0 + 1 + 0 = 1.
    assert suggest("valley", LRS_F, losses, 10) == LRS_F[2]
    assert suggest("minimum", LRS_F, losses, 10) == pytest.approx(LRS_F[4] / 10)  # lowest of 5, 6, 4, 3


def test_minimum_is_a_tenth_of_the_lowest_losss_lr():
    assert suggest("minimum", LRS_F, LOSS_F, 10) == pytest.approx(LRS_F[7] / 10)  # 1.5, window point 6


def test_steep_is_the_left_end_of_the_steepest_forward_step_in_log_lr():
    # Forward differences of the window: 1, -2, -1, -1, 5, -5.5 (equal log steps): the last,
    # from window point 5 -> curve point 6.
    assert suggest("steep", LRS_F, LOSS_F, 10) == LRS_F[6]


def test_slide_walks_left_until_the_gradients_lr_diff_apart_agree():
    # A 30-point window: slope -0.1 up to point 20, then -0.3. np.gradient: -0.1 at 0..19, -0.2 at
    # 20, -0.3 at 21..29. Start r = 29, l = 14: gradients differ, slide; r = 20, l = 5 still differ
    # (the suggestion becomes point 5); then r = 19, l = 4 agree and the slide stops.
    window = [-0.1 * i if i <= 20 else -2.0 - 0.3 * (i - 20) for i in range(30)]
    lrs = [10.0 ** (-8 + 0.2 * i) for i in range(36)]
    assert suggest("slide", lrs, [9.0] + window + [9.0] * 5, 10) == pytest.approx(lrs[6])
    assert suggest("slide", lrs[:20], ([9.0] + window)[:20], 10) is None  # window shorter than lr_diff + 2


def test_rules_refuse_an_unknown_name():
    with pytest.raises(ValueError, match="unknown finder rule"):
        suggest("magic", LRS_F, LOSS_F, 10)


# -- the real range test ---------------------------------------------------------------------------
def _invert_lightning(recorded: list[float]) -> list[float]:
    """The raw losses under Lightning's curve, undoing its EMA with the exponent it really used (k + 2)."""
    avg = [v * (1 - BETA ** (k + 2)) for k, v in enumerate(recorded)]
    return [(a - BETA * (avg[k - 1] if k else 0.0)) / (1 - BETA) for k, a in enumerate(avg)]


@pytest.mark.parametrize("max_lr", [1e-2, 1e4])  # 1e4: Lightning's early stop ends the test early
def test_range_test_recovers_the_true_curve_and_keeps_initial_weights(tmp_path, max_lr):
    pl.seed_everything(0, verbose=False)
    train, _, _ = tiny_loaders(tmp_path)
    model = study_module(lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    result = range_test(trainer(default_root_dir=str(tmp_path)), model, train, max_lr=max_lr, num_training=30)
    n = len(result.lrs)
    assert n == len(result.loss_raw) == len(result.loss_lightning) == len(result.loss) > 11
    assert (n < 30) == (max_lr > 1), n  # the divergent sweep was stopped early
    assert result.lrs == sorted(result.lrs) and 1e-8 <= result.lrs[0] and result.seconds > 0
    # The raw losses agree with those recovered independently from Lightning's own curve ...
    finite = np.isfinite(result.loss_lightning)
    np.testing.assert_allclose(np.array(result.loss_raw)[finite], np.array(_invert_lightning(result.loss_lightning))[finite],
                               rtol=1e-6)
    # ... a fresh 10-class net starts near ln 10, where Lightning's curve starts at about half of it ...
    assert result.loss_raw[0] == pytest.approx(np.log(10), abs=0.3)
    assert result.loss_lightning[0] == pytest.approx(result.loss_raw[0] / (1 + BETA))
    # ... and the curve the rules read starts at the raw loss.
    assert result.loss[0] == result.loss_raw[0] and result.loss == pytest.approx(ema_debiased(result.loss_raw))
    assert set(result.suggestions) == set(RULES) == set(result.suggestions_lightning_curve)
    assert result.suggestions["lightning"] == result.suggestions_lightning_curve["lightning"]
    assert result.suggestions["steepest"] == suggest("steepest", result.lrs, result.loss, 30)
    assert "on_train_batch_end" not in vars(model)  # the recording hook is gone
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    json.dumps(result.record())  # lr_finder.json is plain JSON


def test_range_test_runs_all_its_steps_whatever_the_trainers_epochs(tmp_path):
    """10 batches per epoch and a trainer of one epoch: lr_find alone would stop after 10 steps."""
    pl.seed_everything(0, verbose=False)
    train, _, _ = tiny_loaders(tmp_path)
    assert len(train) == 10
    fit = trainer(epochs=1, default_root_dir=str(tmp_path))
    result = range_test(fit, study_module(lr=1e-3), train, max_lr=1e-2, num_training=30)
    assert len(result.lrs) == 30 and result.suggestions["valley"] is not None
    assert fit.max_epochs == 1  # restored for the training that follows
