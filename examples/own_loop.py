"""PixPro on a torchvision ResNet-18 in a plain PyTorch loop: pixelssl gives the method (heads, momentum teacher,
loss) and the two-view transform; the data, the optimiser and the loop are yours.

    python examples/own_loop.py --steps 20 --size 96
"""

from __future__ import annotations

import argparse

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

import pixelssl


def main(steps: int = 5, size: int = 64, batch_size: int = 8) -> list[float]:
    torch.manual_seed(0)
    backbone = nn.Sequential(*list(torchvision.models.resnet18(weights=None).children())[:-2])  # C5: (B, 512, h, w)
    method = pixelssl.PixPro(backbone, feature_dim=512, proj_hidden_dim=512, proj_dim=128).train()
    # Random images stand in for a dataset: any dataset whose transform is TwoViews works the same way.
    data = torchvision.datasets.FakeData(steps * batch_size, (3, 2 * size, 2 * size), transform=pixelssl.TwoViews(size))
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=pixelssl.collate_views)
    trained = [p for p in method.parameters() if p.requires_grad]  # the momentum teacher is not trained
    optimizer = torch.optim.SGD(trained, lr=0.05, momentum=0.9, weight_decay=1e-5)
    losses = []
    for step, batch in enumerate(loader):
        method.momentum_update(method.momentum_at(step, steps))  # teacher EMA, before this step's keys
        loss = method(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        print(f"step {step}: loss {loss.item():.4f}")
    return losses  # backbone holds the pre-trained weights: torch.save(backbone.state_dict(), "backbone.pt")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--size", type=int, default=64, help="side of each view in pixels")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    main(args.steps, args.size, args.batch_size)
