"""What runs inside a trial: data, model, Lightning module, Ray Tune trainable."""

OPTIMIZERS = ("sgd", "adam")  # what a trial can train with (trainables/module.py builds them)
# Learning-rate-free optimisers, one arm each (trainables/module.py builds them): Prodigy
# (prodigyopt) whatever the optimiser; D-Adaptation's DAdaptSGD (with the study's momentum) for
# sgd, DAdaptAdam for adam. They train at the base LR their authors recommend, LR_FREE_LR.
LR_FREE = ("prodigy", "dadapt")
LR_FREE_LR = 1.0
