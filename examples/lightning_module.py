"""PixPro as a Lightning module (optional extra: pip install 'pixelssl[lightning]'): the method is an nn.Module,
so Lightning runs it like any model; the teacher's momentum update goes at the start of each training step.

    python examples/lightning_module.py      # 20 steps on 96 px views of random images
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader

import pixelssl

try:
    import lightning as L
except ImportError as exc:  # the optional extra is not installed
    raise SystemExit("examples/lightning_module.py needs Lightning: pip install 'pixelssl[lightning]'") from exc


class PixProModule(L.LightningModule):
    def __init__(self, lr: float = 0.05, **settings) -> None:
        super().__init__()
        backbone = nn.Sequential(*list(torchvision.models.resnet18(weights=None).children())[:-2])  # C5 map
        self.method = pixelssl.PixPro(backbone, feature_dim=512, **settings)
        self.lr = lr

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.method.momentum_update(self.method.momentum_at(self.global_step, self.trainer.max_steps))
        out = self.method(batch)
        self.log_dict({k: v.detach() for k, v in out.items()}, batch_size=batch["view1"].shape[0])
        return out["loss"]

    def configure_optimizers(self) -> torch.optim.Optimizer:
        trained = [p for p in self.parameters() if p.requires_grad]  # not the momentum teacher
        return torch.optim.SGD(trained, lr=self.lr, momentum=0.9, weight_decay=1e-5)


def main(steps: int = 3, size: int = 64, batch_size: int = 8) -> PixProModule:
    torch.manual_seed(0)
    data = torchvision.datasets.FakeData(steps * batch_size, (3, 2 * size, 2 * size), transform=pixelssl.TwoViews(size))
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True, collate_fn=pixelssl.collate_views)
    module = PixProModule(proj_hidden_dim=512, proj_dim=128)
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    return module


if __name__ == "__main__":
    main(steps=20, size=96)
