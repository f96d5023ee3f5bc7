"""The emotion network: a timm backbone (N-channel first conv, no classifier) + our head."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import timm
import torch
from torch import nn

from models.head import HeadSettings
from models.registry import get_backbone


@dataclass(frozen=True)
class ModelSettings:
    """Everything needed to rebuild the same network (stored in every checkpoint)."""

    backbone: str
    in_chans: int
    classes: tuple[str, ...]
    head: HeadSettings = field(default_factory=HeadSettings)
    drop_path: float = 0.0

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["classes"] = list(self.classes)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelSettings:
        return cls(backbone=data["backbone"], in_chans=int(data["in_chans"]), classes=tuple(data["classes"]),
                   head=HeadSettings(**data.get("head", {})), drop_path=float(data.get("drop_path", 0.0)))


class EmotionNet(nn.Module):
    """``backbone`` gives pooled features, ``head`` maps them to class logits."""

    def __init__(self, settings: ModelSettings) -> None:
        super().__init__()
        spec = get_backbone(settings.backbone)
        kwargs = {"drop_path_rate": settings.drop_path} if settings.drop_path else {}
        self.backbone = timm.create_model(spec.timm_name, pretrained=False, in_chans=settings.in_chans,
                                          num_classes=0, **kwargs)
        features = getattr(self.backbone, "head_hidden_size", None) or self.backbone.num_features
        self.head = settings.head.build(features, settings.num_classes)
        self.settings = settings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
