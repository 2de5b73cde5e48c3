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


class Attention(nn.Module):
    """Multi-head self-attention written out (one qkv projection, softmax(q k^T / sqrt(d)) v, an
    output projection), so that torch's FlopCounterMode counts its two matrix products as such."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """A pre-LayerNorm transformer block: x + attention(LN(x)), then x + MLP(LN(x)) (GELU)."""

    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.mlp = nn.LayerNorm(dim), nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    """A small Vision Transformer (Dosovitskiy et al. 2021) for 28x28 grey images: non-overlapping
    `patch` x `patch` patches embedded by a strided conv, a class token, learnt position
    embeddings, `depth` pre-LayerNorm blocks, a final LayerNorm, and a linear `head` on the class
    token. Position embeddings and class token start at N(0, 0.02) (truncated), as in timm."""

    def __init__(self, num_classes: int = 10, patch: int = 7, dim: int = 64, depth: int = 4, heads: int = 4,
                 mlp: int = 128, image: int = 28):
        super().__init__()
        import torch

        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, dim))
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.blocks = nn.Sequential(*(Block(dim, heads, mlp) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def features(self, x):
        """The class token's final representation, (batch, dim)."""
        import torch

        x = self.embed(x).flatten(2).transpose(1, 2)  # (batch, patches, dim)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos
        return self.norm(self.blocks(x))[:, 0]

    def forward(self, x):
        return self.head(self.features(x))
