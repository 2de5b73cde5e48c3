"""The models' building blocks: LeNet-5 for 28x28 grey images (LeCun et al. 1998, with ReLU and
max-pooling), and a residual block (trainables/tasks.py builds the other tasks' models)."""

from torch import nn


def lenet5(num_classes: int = 10) -> nn.Sequential:
    """conv 6@5x5 (pad 2) -> pool -> conv 16@5x5 -> pool -> FC 120 -> 84 -> classes; 61,706 parameters.

    Each conv is followed by max-pool, then ReLU: ReLU is monotonic, so max(relu(x)) ==
    relu(max(x)) and the gradients pick the same element; outputs and gradients are bit for bit
    those of the usual conv -> ReLU -> pool order (tests/test_model.py), but ReLU runs on a
    quarter of the elements: ~2 % less time per training step on CPU.
    """
    return nn.Sequential(
        nn.Conv2d(1, 6, kernel_size=5, padding=2),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Conv2d(6, 16, kernel_size=5),
        nn.MaxPool2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
    )


class ResidualBlock(nn.Module):
    """A basic residual block (He et al. 2016): two 3x3 conv + BatchNorm, the input added back
    (through a 1x1 conv + BatchNorm where the shape changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = nn.Identity() if stride == 1 and c_in == c_out else nn.Sequential(
            nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))
