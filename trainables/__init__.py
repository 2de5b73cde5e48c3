"""What runs inside a trial: data, model, Lightning module, Ray Tune trainable.

This package's top level and trainables/data.py do not import Lightning (data.py imports torch
only for the split, when it loads a dataset), so the driver, which hands `train_trial` to Ray
Tune and reads the data, never pays for Lightning.
"""

# The study's optimisers, for a module without its own (trainables/optim.py builds them): SGD with
# momentum, Adam, and AdamW (Adam with decoupled weight decay, --weight-decay).
OPTIMIZERS = ("sgd", "adam", "adamw")
# How the LR moves over a training, from the arm's LR as its peak (trainables/optim.py builds them):
# constant (no scheduler at all), torch's OneCycleLR, or a linear warm-up then cosine decay to zero.
LR_SCHEDULES = ("constant", "onecycle", "cosine")
# Learning-rate-free optimisers, one arm each (trainables/optim.py builds them): Prodigy
# (prodigyopt) whatever the optimiser; D-Adaptation's DAdaptSGD (with the study's momentum) for
# sgd, DAdaptAdam for adam and adamw. Under adamw both decay the weights, decoupled, by
# --weight-decay (their own `weight_decay`, `decouple=True`). They train at the base LR their authors recommend, LR_FREE_LR.
LR_FREE = ("prodigy", "dadapt")
# The optimizer and lr_schedule of a setting whose module builds its own optimiser (its
# configure_optimizers): the study's flags do not apply to it.
OWN_OPTIMIZER = "module"
LR_FREE_LR = 1.0


def train_trial(config: dict, data, objects: dict | None = None) -> None:
    """Ray Tune's entry point for one trial (trainables/trainable.py's `train_trial`): torch and
    Lightning are imported here, in the trial's worker process. `objects`: the tasks given as
    Python objects (trainables/tasks.py `register`), registered here first."""
    from trainables import tasks
    from trainables.trainable import train_trial as train

    tasks.register(objects or {})
    train(config, data)
