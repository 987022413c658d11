"""A small MLP-Mixer for 28x28 grey images (Fashion-MNIST), timm-style: the model the e2e test
opens in VS Code. Its sizes match mixer.spec.json."""
import torch
from torch import nn

IMAGE = 28
PATCH = 4
DIM = 256
DEPTH = 2
TOKENS = (IMAGE // PATCH) ** 2
# pixelfly: tokens=49


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class MixerBlock(nn.Module):
    def __init__(self, dim=DIM, tokens=TOKENS, token_hidden=128, channel_hidden=1024):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.mlp_tokens = Mlp(tokens, token_hidden)
        self.norm2 = nn.LayerNorm(dim)
        # the channel MLP, written out: these are the layers worth sparsifying
        self.fc1 = nn.Linear(dim, channel_hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(channel_hidden, dim)

    def forward(self, x):
        x = x + self.mlp_tokens(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class Mixer(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, DIM, kernel_size=PATCH, stride=PATCH)
        self.blocks = nn.Sequential(*[MixerBlock() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, num_classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        x = self.blocks(x)
        return self.head(self.norm(x).mean(dim=1))
