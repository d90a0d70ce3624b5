"""A re-statement of the official PixPro release's training step, for side-by-side timing only.

It keeps the release's implementation choices that matter for speed: NCHW (contiguous) fp32 tensors,
two separate encoder passes per view, the momentum update as a Python loop that rebuilds every teacher
tensor, the distance matrix built from explicit coordinate grids, and LARS as a per-parameter Python loop
around SGD. The math is the same as ``pixelssl.methods.pixpro`` (the tests check our parts against the
formulas); only the way it is executed differs. Written from the paper and ``../shared/METHODS.md``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet50


class ProjectionMLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int = 4096, out: int = 256) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, hidden, 1)
        self.bn = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, out, 1)

    def forward(self, x):
        return self.conv2(F.relu(self.bn(self.conv1(x))))


def trunk(net: nn.Module) -> nn.Module:
    return nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)


class ReferencePixPro(nn.Module):
    def __init__(self, steps: int) -> None:
        super().__init__()
        self.encoder = trunk(resnet50())
        self.encoder_k = trunk(resnet50())
        self.projector = ProjectionMLP(2048)
        self.projector_k = ProjectionMLP(2048)
        self.value = nn.Conv2d(256, 256, 1)
        for q, k in zip(list(self.encoder.parameters()) + list(self.projector.parameters()),
                        list(self.encoder_k.parameters()) + list(self.projector_k.parameters())):
            k.data.copy_(q.data)
            k.requires_grad = False
        self.k, self.K = 0, steps

    @torch.no_grad()
    def momentum_update(self) -> None:
        m = 1.0 - (1.0 - 0.99) * (math.cos(math.pi * self.k / self.K) + 1) / 2.0
        self.k += 1
        for q, k in zip(list(self.encoder.parameters()) + list(self.projector.parameters()),
                        list(self.encoder_k.parameters()) + list(self.projector_k.parameters())):
            k.data = k.data * m + q.data * (1.0 - m)

    def propagate(self, x):
        n, c, h, w = x.shape
        v = F.normalize(self.value(x), dim=1).view(n, c, -1)
        a = F.normalize(x, dim=1).view(n, c, -1)
        s = torch.clamp(torch.bmm(a.transpose(1, 2), a), min=0.0) ** 2
        return torch.bmm(v, s.transpose(1, 2)).view(n, c, h, w)

    @staticmethod
    def consistency(q, k, box_q, box_k):
        n, c, h, w = q.shape
        q, k = q.view(n, c, -1), k.view(n, c, -1)
        xs = torch.arange(0.0, w).view(1, 1, -1).repeat(1, h, 1)
        ys = torch.arange(0.0, h).view(1, -1, 1).repeat(1, 1, w)
        qw = ((box_q[:, 2] - box_q[:, 0]) / w).view(-1, 1, 1)
        qh = ((box_q[:, 3] - box_q[:, 1]) / h).view(-1, 1, 1)
        kw = ((box_k[:, 2] - box_k[:, 0]) / w).view(-1, 1, 1)
        kh = ((box_k[:, 3] - box_k[:, 1]) / h).view(-1, 1, 1)
        diag = torch.max(torch.sqrt(qw**2 + qh**2), torch.sqrt(kw**2 + kh**2))
        cqx = (xs + 0.5) * qw + box_q[:, 0].view(-1, 1, 1)
        cqy = (ys + 0.5) * qh + box_q[:, 1].view(-1, 1, 1)
        ckx = (xs + 0.5) * kw + box_k[:, 0].view(-1, 1, 1)
        cky = (ys + 0.5) * kh + box_k[:, 1].view(-1, 1, 1)
        dist = torch.sqrt((cqx.view(-1, h * w, 1) - ckx.view(-1, 1, h * w)) ** 2
                          + (cqy.view(-1, h * w, 1) - cky.view(-1, 1, h * w)) ** 2) / diag
        pos = (dist < 0.7).float().detach()
        logit = torch.bmm(q.transpose(1, 2), k)
        return -2 * ((logit * pos).sum(-1).sum(-1) / (pos.sum(-1).sum(-1) + 1e-6)).mean()

    def forward(self, im1, im2, box1, box2):
        p1 = F.normalize(self.propagate(self.projector(self.encoder(im1))), dim=1)
        p2 = F.normalize(self.propagate(self.projector(self.encoder(im2))), dim=1)
        with torch.no_grad():
            self.momentum_update()
            k1 = F.normalize(self.projector_k(self.encoder_k(im1)), dim=1)
            k2 = F.normalize(self.projector_k(self.encoder_k(im2)), dim=1)
        return self.consistency(p1, k2, box1, box2) + self.consistency(p2, k1, box2, box1)


class ReferenceLARS:
    """SGD wrapped by a per-parameter Python loop adding weight decay and the trust ratio (release style)."""

    def __init__(self, model: nn.Module, lr: float, weight_decay: float = 1e-5) -> None:
        decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
        plain = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
        self.groups = [(decay, weight_decay, True), (plain, 0.0, False)]
        self.sgd = torch.optim.SGD([{"params": decay}, {"params": plain}], lr=lr, momentum=0.9, foreach=False)

    def zero_grad(self) -> None:
        self.sgd.zero_grad()

    @torch.no_grad()
    def step(self) -> None:
        for params, wd, adapt in self.groups:
            for p in params:
                if p.grad is None:
                    continue
                if wd > 0:
                    p.grad = p.grad.add(p, alpha=wd)
                if adapt:
                    pn, gn = p.norm(), p.grad.norm()
                    if pn > 0 and gn > 0:
                        p.grad = p.grad.mul(0.001 * pn / (gn + 1e-8))
        self.sgd.step()
