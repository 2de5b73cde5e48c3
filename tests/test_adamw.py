"""AdamW, the study's third optimiser: its update against hand-worked values, and the range test
probes with the very optimiser the trial trains with (tiny generated data, no Ray)."""

from __future__ import annotations

import pytest
import torch

from study.config import StudyConfig
from study.space import trial_points
from tests.conftest import make_idx_dir
from trainables import trainable
from trainables.data import load_dataset
from trainables.optim import Optim, _optimizer


def two_steps(optim: Optim) -> list[float]:
    """One parameter p = 1, loss 2p (gradient 2 at every step), lr 0.1: p after each of two steps."""
    p = torch.nn.Parameter(torch.tensor(1.0))
    opt = _optimizer([p], 0.1, optim)
    seen = []
    for _ in range(2):
        opt.zero_grad()
        (2 * p).backward()
        opt.step()
        seen.append(p.item())
    return seen


def test_adamw_decays_the_weights_decoupled_as_worked_out_by_hand():
    """lr 0.1, weight decay 0.1, betas (0.9, 0.999), gradient g = 2 at every step.
    Step 1: decay first, p = 1 x (1 - 0.1 x 0.1) = 0.99; m = 0.1 x 2 = 0.2, v = 0.001 x 4 = 0.004;
      bias-corrected m^ = 0.2 / 0.1 = 2, v^ = 0.004 / 0.001 = 4; p -= 0.1 x 2 / sqrt(4) = 0.1: 0.89.
    Step 2: p = 0.89 x 0.99 = 0.8811; m = 0.9 x 0.2 + 0.2 = 0.38, m^ = 0.38 / 0.19 = 2;
      v = 0.999 x 0.004 + 0.004 = 0.007996, v^ = 0.007996 / 0.001999 = 4; p -= 0.1: 0.7811.
    Adam with the decay coupled into the gradient (L2, g = 2 + 0.1 p) would step by 0.1 from 1:
    0.9, not 0.89; Adam without decay: 0.9, then 0.8."""
    assert two_steps(Optim("adamw", weight_decay=0.1)) == [pytest.approx(0.89, rel=1e-6), pytest.approx(0.7811, rel=1e-6)]
    assert two_steps(Optim("adamw", weight_decay=0.0)) == [pytest.approx(0.9, rel=1e-6), pytest.approx(0.8, rel=1e-6)]
    assert two_steps(Optim("adam", weight_decay=0.1)) == [pytest.approx(0.9, rel=1e-6), pytest.approx(0.8, rel=1e-6)]


@pytest.mark.parametrize("lr_free, expected", [("prodigy", "Prodigy"), ("dadapt", "DAdaptAdam")])
def test_the_learning_rate_free_arms_decay_the_weights_under_adamw(lr_free, expected):
    p = torch.nn.Parameter(torch.tensor(1.0))
    opt = _optimizer([p], 1.0, Optim("adamw", lr_free=lr_free, weight_decay=0.05))
    group = opt.param_groups[0]
    assert type(opt).__name__ == expected and group["weight_decay"] == 0.05 and group["decouple"] is True
    assert _optimizer([p], 1.0, Optim("adam", lr_free=lr_free, weight_decay=0.05)).param_groups[0]["weight_decay"] == 0


def test_the_range_test_probes_with_the_trials_adamw_and_its_weight_decay(tmp_path, monkeypatch):
    study = StudyConfig(arms=("finder",), optimizer=("adamw",), weight_decay=0.03, finder_rules=("valley",), epochs=1,
                        batch_size=32, val_size=100)
    config = trial_points(study)[0]
    assert config["optimizer"] == "adamw" and config["weight_decay"] == 0.03  # the trial carries it
    data = load_dataset(str(make_idx_dir(tmp_path / "idx")), val_size=100, strict_counts=False)
    probed = []

    def range_test(trainer, module, **kwargs):
        probed.append(module.configure_optimizers.args[1])  # what `install` gave the module
        raise StopIteration

    monkeypatch.setattr(trainable, "range_test", range_test)
    with pytest.raises(StopIteration):
        trainable.trial_range_test(config, data)
    assert probed == [Optim("adamw", 0.9, "constant", weight_decay=0.03)]
    built = _optimizer([torch.nn.Parameter(torch.zeros(1))], 0.1, probed[0])
    assert isinstance(built, torch.optim.AdamW) and built.param_groups[0]["weight_decay"] == 0.03
