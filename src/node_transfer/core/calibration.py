"""Calibration of a classifier's confidence: the expected calibration error, accumulated batch by batch."""

from __future__ import annotations

import torch


class CalibrationBins:
    """Expected calibration error (Guo et al. 2017): |accuracy - confidence| over equal-width confidence bins,
    weighted by the share of samples in each bin. Accumulates batch by batch."""

    def __init__(self, bins: int = 15) -> None:
        self.bins = bins
        self.count = torch.zeros(bins, dtype=torch.float64)
        self.confidence = torch.zeros(bins, dtype=torch.float64)
        self.correct = torch.zeros(bins, dtype=torch.float64)

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        confidence, predicted = logits.float().softmax(dim=1).max(dim=1)
        index = (confidence * self.bins).long().clamp(max=self.bins - 1).cpu()
        ones = torch.ones_like(index, dtype=torch.float64)
        self.count.index_add_(0, index, ones)
        self.confidence.index_add_(0, index, confidence.double().cpu())
        self.correct.index_add_(0, index, (predicted == labels).double().cpu())

    def ece(self) -> float:
        total = self.count.sum()
        if total == 0:
            return float("nan")
        return float((self.correct - self.confidence).abs().sum() / total)
