"""LeNet-5 for 28x28 grey images (LeCun et al. 1998, with ReLU and max-pooling)."""

from torch import nn


def lenet5(num_classes: int = 10) -> nn.Sequential:
    """conv 6@5x5 (pad 2) -> pool -> conv 16@5x5 -> pool -> FC 120 -> 84 -> classes; 61,706 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )
