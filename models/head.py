"""The classification head that sits on the backbone's pooled features."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn


@dataclass(frozen=True)
class HeadSettings:
    """Default is the seed's head: dropout 0.6 -> linear 512 -> ReLU -> dropout 0.5 -> linear.

    ``hidden=0`` gives a single dropout + linear layer.
    """

    hidden: int = 512
    dropout_in: float = 0.6
    dropout_hidden: float = 0.5

    def __post_init__(self) -> None:
        if self.hidden < 0:
            raise ValueError(f"--head-hidden must be >= 0 (got {self.hidden})")
        for name, p in (("--head-dropout", self.dropout_in), ("--head-dropout-hidden", self.dropout_hidden)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1) (got {p})")

    def to_dict(self) -> dict:
        return asdict(self)

    def build(self, in_features: int, num_classes: int) -> nn.Sequential:
        if self.hidden == 0:
            return nn.Sequential(nn.Dropout(self.dropout_in), nn.Linear(in_features, num_classes))
        return nn.Sequential(
            nn.Dropout(self.dropout_in), nn.Linear(in_features, self.hidden), nn.ReLU(inplace=True),
            nn.Dropout(self.dropout_hidden), nn.Linear(self.hidden, num_classes),
        )
