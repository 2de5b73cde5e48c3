"""What runs inside a trial: data, model, Lightning module, Ray Tune trainable."""
