"""What runs inside a trial: data, model, Lightning module, Ray Tune trainable."""

OPTIMIZERS = ("sgd", "adam")  # what a trial can train with (trainables/module.py builds them)
