"""A small MLP-Mixer for 28x28 grey images (Fashion-MNIST): the model the e2e test opens in VS Code.
Its sizes match mixer.spec.json, the JSON spec the test trains."""
import torch
from torch import nn

IMAGE = 28
PATCH = 4
DIM = 256
DEPTH = 2
TOKENS = (IMAGE // PATCH) ** 2


class MixerBlock(nn.Module):
    def __init__(self, dim=DIM, tokens=TOKENS, token_hidden=128, channel_hidden=1024):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_fc1 = nn.Linear(tokens, token_hidden)
        self.token_fc2 = nn.Linear(token_hidden, tokens)
        self.norm2 = nn.LayerNorm(dim)
        self.channel_fc1 = nn.Linear(dim, channel_hidden)
        self.channel_fc2 = nn.Linear(channel_hidden, dim)

    def forward(self, x):
        y = self.norm1(x).transpose(1, 2)
        x = x + self.token_fc2(torch.nn.functional.gelu(self.token_fc1(y))).transpose(1, 2)
        return x + self.channel_fc2(torch.nn.functional.gelu(self.channel_fc1(self.norm2(x))))


class Mixer(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.patch_embed = nn.Conv2d(1, DIM, kernel_size=PATCH, stride=PATCH)
        self.blocks = nn.ModuleList([MixerBlock() for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM)
        self.head = nn.Linear(DIM, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))
