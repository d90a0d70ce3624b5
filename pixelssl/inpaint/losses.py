"""DeepFill v1 losses: spatially discounted L1, autoencoder L1, WGAN with a hole-masked gradient penalty.

Weights and formulas as the authors' v1.0.0 release (``inpaint_model.py``, ``inpaint_ops.py``, ``inpaint.yml``). The
discount factor ``gamma`` defaults to the paper's 0.99 (the released config has 0.9; 0.99 did as well or better in
our quality benchmark: docs/inpainting.md).

Example::

    loss = InpaintLoss(box_size=128, gamma=0.99)
    terms = loss.generator(real, coarse, refined, mask, boxes, critics)   # dict of named terms, "total" included
    d_terms = loss.critic(real, completed, mask, boxes, critics, generator)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, autograd, nn

from pixelssl.inpaint.masks import crop_boxes


def spatial_discount(height: int, width: int, gamma: float) -> Tensor:
    """Release ``spatial_discounting_mask``: weight ``max(g**min(i, h - i), g**min(j, w - j))`` at (i, j), (h, w)."""
    i = torch.arange(height, dtype=torch.float64)
    j = torch.arange(width, dtype=torch.float64)
    rows = gamma ** torch.minimum(i, height - i)
    cols = gamma ** torch.minimum(j, width - j)
    return torch.maximum(rows.view(-1, 1), cols.view(1, -1)).float()


def discounted_l1(prediction: Tensor, target: Tensor, discount: Tensor) -> Tensor:
    """Mean of ``|prediction - target| * discount`` over the hole box crops (B, C, h, w); discount (h, w)."""
    return ((prediction - target).abs() * discount.to(prediction)).mean()


def known_region_l1(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Release ``ae_loss`` term: ``mean(|prediction - target| * (1 - mask))`` (divided by the known fraction later)."""
    return ((prediction - target).abs() * (1 - mask)).mean()


def wgan_losses(real_scores: Tensor, fake_scores: Tensor) -> tuple[Tensor, Tensor]:
    """Release ``gan_wgan_loss``: generator ``-mean(D(fake))``, critic ``mean(D(fake)) - mean(D(real))``."""
    return -fake_scores.mean(), fake_scores.mean() - real_scores.mean()


def random_interpolates(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Release ``random_interpolates``: ``real + alpha * (fake - real)``, alpha ~ U(0, 1) per sample."""
    alpha = torch.rand(real.shape[0], generator=generator).to(real).view(-1, *([1] * (real.dim() - 1)))
    return real + alpha * (fake - real)


def gradient_penalty(critic: Callable[[Tensor], Tensor], interpolates: Tensor, mask: Tensor,
                     norm: float = 1.0) -> Tensor:
    """WGAN-GP restricted to the hole (release ``gradients_penalty``): ``mean((|grad D * mask| - 1) ** 2)``.

    The slope is ``sqrt(sum(grad**2 * mask))`` over each sample's pixels and channels (1e-12 inside the root
    keeps the gradient finite when the masked gradient is exactly zero).
    """
    interpolates = interpolates.detach().requires_grad_(True)
    scores = critic(interpolates)
    (grad,) = autograd.grad(scores.sum(), interpolates, create_graph=True)
    slopes = (grad.pow(2) * mask).flatten(1).sum(dim=1).add(1e-12).sqrt()
    return (slopes - norm).pow(2).mean()


class InpaintLoss(nn.Module):
    """DeepFill v1 objective. Generator: ``gan_alpha * (global_alpha * global + local WGAN) + l1_alpha * (coarse_alpha *
    discounted L1(coarse) + discounted L1(refined)) + ae_alpha * (coarse_alpha * L1_known(coarse) + L1_known(refined))
    / known fraction``; critic: both WGAN critic losses + ``gp_lambda`` * (local + global masked GP).

    Release defaults: l1 1.2, coarse 1.2, ae 1.2, gan 0.001, global 1, gp lambda 10; gamma the paper's 0.99 (release 0.9).
    """

    def __init__(self, box_size: int, gamma: float = 0.99, l1_alpha: float = 1.2, coarse_l1_alpha: float = 1.2,
                 ae_alpha: float = 1.2, gan_alpha: float = 0.001, global_wgan_alpha: float = 1.0,
                 gp_lambda: float = 10.0) -> None:
        super().__init__()
        self.box_size = box_size
        self.register_buffer("discount", spatial_discount(box_size, box_size, gamma), persistent=False)
        self.l1_alpha, self.coarse_l1_alpha, self.ae_alpha = l1_alpha, coarse_l1_alpha, ae_alpha
        self.gan_alpha, self.global_wgan_alpha, self.gp_lambda = gan_alpha, global_wgan_alpha, gp_lambda

    def reconstruction(self, real: Tensor, coarse: Tensor, refined: Tensor, mask: Tensor,
                       boxes: Tensor) -> dict[str, Tensor]:
        """The release's ``l1_loss`` (discounted, on the hole box) and ``ae_loss`` (known region), unweighted."""
        crop = lambda x: crop_boxes(x, boxes, self.box_size)  # noqa: E731
        real_box = crop(real)
        l1 = (self.coarse_l1_alpha * discounted_l1(crop(coarse), real_box, self.discount)
              + discounted_l1(crop(refined), real_box, self.discount))
        ae = (self.coarse_l1_alpha * known_region_l1(coarse, real, mask) + known_region_l1(refined, real, mask))
        return {"l1": l1, "ae": ae / (1 - mask).mean().clamp(min=1e-6)}

    def generator(self, real: Tensor, coarse: Tensor, refined: Tensor, mask: Tensor, boxes: Tensor,
                  critics: nn.Module | None) -> dict[str, Tensor]:
        """Generator terms and their weighted ``total``; ``critics=None`` skips the adversarial terms."""
        terms = self.reconstruction(real, coarse, refined, mask, boxes)
        total = self.l1_alpha * terms["l1"] + self.ae_alpha * terms["ae"]
        if critics is not None and self.gan_alpha > 0:
            completed = refined * mask + real * (1 - mask)
            local_fake, global_fake = critics(crop_boxes(completed, boxes, self.box_size), completed)
            terms["g_local"], terms["g_global"] = -local_fake.mean(), -global_fake.mean()
            total = total + self.gan_alpha * (self.global_wgan_alpha * terms["g_global"] + terms["g_local"])
        terms["total"] = total
        return terms

    def critic(self, real: Tensor, completed: Tensor, mask: Tensor, boxes: Tensor, critics: nn.Module,
               generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Critic terms on real vs completed (hole pasted, detached) images, with the hole-masked penalty."""
        completed = completed.detach()
        crop = lambda x: crop_boxes(x, boxes, self.box_size)  # noqa: E731
        real_local, real_global = critics(crop(real), real)
        fake_local, fake_global = critics(crop(completed), completed)
        _, d_local = wgan_losses(real_local, fake_local)
        _, d_global = wgan_losses(real_global, fake_global)
        gp_local = gradient_penalty(critics.local, random_interpolates(crop(real), crop(completed), generator),
                                    crop(mask))
        gp_global = gradient_penalty(critics.global_, random_interpolates(real, completed, generator), mask)
        gp = self.gp_lambda * (gp_local + gp_global)
        return {"d_local": d_local, "d_global": d_global, "gp": gp, "total": d_local + d_global + gp}
