"""Two pictures of the study drawn from the code: the model (backbone -> pool -> ODE block -> FC, with the tensor
sizes of a built model) and the protocol (baseline -> checkpoint -> continued arms, in both regimes, with the epoch
budgets of the suite registry)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.patches import FancyBboxPatch
from matplotlib.ticker import MaxNLocator

from ..analysis.formats import format_tolerance
from ..core.config import ExperimentConfig
from ..suites.registry import get_suite
from .glossary import NUM_CLASSES

#: One colour per kind of box, the same in both pictures.
COLOURS = {"data": "#e8e8e8", "backbone": "#c6dbef", "head": "#fdd0a2", "node": "#fdae6b", "continued": "#fdae6b",
           "baseline": "#c6dbef", "imagenet": "#c7e9c0"}


@dataclass(frozen=True)
class ModelSizes:
    """What the model diagram states, read from a model built for a configuration."""

    backbone: str
    image: tuple[int, int, int]
    feature_map: tuple[int, int, int]
    pooled: int
    width: int
    classes: int
    solver: str
    backbone_params: int
    block_params: int
    fc_params: int


def model_sizes(params: dict[str, Any]) -> ModelSizes:
    """Build the backbone (random weights) and NODE head of a configuration and read the sizes along the way."""
    import torch

    from ..model.backbones import create_backbone
    from ..model.heads import count_parameters, head_from_config

    config = ExperimentConfig.from_dict({k: v for k, v in params.items() if k in ExperimentConfig.field_names()})
    config = config.replace(head="node")
    backbone, _ = create_backbone(config.backbone, "none")
    image = (3, config.image_size, config.image_size)
    with torch.no_grad():
        feature_map = backbone.eval().forward_features(torch.zeros(1, *image)).shape[1:]
    head = head_from_config(config, int(feature_map[0]), NUM_CLASSES)
    settings = head.block.settings
    solver = (f"{settings.solver}, step {settings.step_size:g}" if settings.fixed_step else
              f"{settings.solver}, rtol = atol = {format_tolerance(settings.rtol)}")
    return ModelSizes(config.backbone, image, tuple(int(s) for s in feature_map), int(feature_map[0]),
                      config.ode_width, NUM_CLASSES, solver, count_parameters(backbone),
                      count_parameters(head.block), count_parameters(head.fc))


def _box(ax: plt.Axes, x: float, y: float, w: float, h: float, text: str, colour: str, size: float = 10) -> None:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12", fc=colour, ec="0.3"))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)


def _shape(shape: tuple[int, ...]) -> str:
    return " × ".join(str(s) for s in shape)


def plot_model(sizes: ModelSizes) -> plt.Figure:
    """The transfer model as a column of boxes, top to bottom, each arrow labelled with the tensor size (per image)
    it carries; a bracket marks the NODE head and names the controls that replace its ODE block."""
    fig, ax = plt.subplots(figsize=(7, 6.6))
    d, w = sizes.pooled, sizes.width
    boxes = [  # (bottom, height, text, colour), top to bottom
        (9.0, 0.7, "image", COLOURS["data"]),
        (7.3, 1.0, f"{sizes.backbone} (forward_features)\n{sizes.backbone_params / 1e6:.1f} M parameters",
         COLOURS["backbone"]),
        (6.0, 0.6, "global average pool", COLOURS["head"]),
        (3.2, 2.0, f"ODE block: h(0) → h(1), dh/dt = f(t, h)\n{sizes.solver}\n"
                   f"f: LayerNorm → Linear({d} + t → {w})\n→ softplus → Linear({w} + t → {d})\n"
                   f"{sizes.block_params:,} parameters", COLOURS["node"]),
        (1.6, 0.8, f"FC: Linear({d} → {sizes.classes})\n{sizes.fc_params:,} parameters", COLOURS["head"]),
    ]
    left, width = 0.2, 5.6
    for bottom, height, text, colour in boxes:
        _box(ax, left, bottom, width, height, text, colour)
    labels = [f"{_shape(sizes.image)} (channels × pixels)", f"feature map {_shape(sizes.feature_map)}",
              f"vector of {d}", f"vector of {d}", f"{sizes.classes} logits"]
    ends = [(bottom, next_bottom + height) for (bottom, *_), (next_bottom, height, *_) in zip(boxes, boxes[1:])]
    ends.append((boxes[-1][0], 0.8))
    for (top, end), label in zip(ends, labels):
        ax.annotate("", (3.0, end + 0.05), (3.0, top - 0.05), arrowprops=dict(arrowstyle="-|>", color="0.2", lw=1.3))
        ax.text(3.15, (top + end) / 2, label, ha="left", va="center", fontsize=9.5, color="0.15")
    head_top, head_bottom = boxes[2][0] + boxes[2][1], boxes[4][0]
    ax.plot([6.05, 6.25, 6.25, 6.05], [head_top, head_top, head_bottom, head_bottom], color="0.3", lw=1.2)
    ax.text(6.4, (head_top + head_bottom) / 2, "the NODE head\n\nits controls\nreplace the block:\nnothing (FC),\n"
            "f once without t\n(MLP),\none Euler step", ha="left", va="center", fontsize=9.5, color="0.2")
    ax.set_xlim(0, 8.6)
    ax.set_ylim(0.5, 9.8)
    ax.axis("off")
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class Protocol:
    """The epoch budgets and arms of the two fine-tuning regimes (a profile of the `paper` and `overfit` suites)."""

    profile: str
    paper_baseline: int
    paper_continued: int
    paper_arms: tuple[str, ...]
    paper_stops_at_target: bool
    overfit_baseline: int
    overfit_continued: int
    overfit_arms: tuple[str, ...]
    side_by_side: tuple[str, ...]
    overfit_images: int


def protocol(profile: str = "fmnist") -> Protocol:
    """The protocol of a profile, read from the suite registry."""
    paper, overfit = get_suite("paper", profile), get_suite("overfit", profile)

    def split(runs: list) -> tuple[int, int, tuple[str, ...], tuple[str, ...]]:
        baseline = next(run for run in runs if run.label == "baseline")
        continued = [run for run in runs if run.init_from == "baseline"]
        fresh = tuple(run.label for run in runs if run.init_from is None and run.label != "baseline")
        return (baseline.params["epochs"], max(run.params["epochs"] for run in continued),
                tuple(run.label for run in continued), fresh)

    p_base, p_cont, p_arms, _ = split(paper)
    o_base, o_cont, o_arms, fresh = split(overfit)
    return Protocol(profile, p_base, p_cont, p_arms, any(run.target_from for run in paper), o_base, o_cont, o_arms,
                    fresh, int(overfit[0].params.get("train_subset", 0)))


def _bar(ax: plt.Axes, y: float, start: float, length: float, text: str, colour: str) -> None:
    ax.barh(y, length, left=start, height=0.7, color=colour, edgecolor="0.3")
    ax.text(start + length / 2, y, text, ha="center", va="center", fontsize=9.5)


def _checkpoint(ax: plt.Axes, x: float, y0: float, y1: float) -> None:
    ax.plot([x, x], [y0, y1], color="0.2", lw=1.2, ls="--")
    ax.plot([x], [y0], marker="v", color="0.2", ms=7)
    ax.text(x, y0 + 0.12, "checkpoint", ha="center", va="bottom", fontsize=9.5)


def plot_protocol(plan: Protocol) -> plt.Figure:
    """Two timelines on epoch axes: the paper regime (baseline, then the continued arms from its checkpoint) and the
    overfitting regime (the same, longer, and the NODE head trained from ImageNet beside the baseline)."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8.5, 5.4), height_ratios=[2, 3])
    stop = "\neach stops at the baseline's val. accuracy" if plan.paper_stops_at_target else ""
    _bar(top, 1, 0, plan.paper_baseline, "baseline\n(FC, from ImageNet)", COLOURS["baseline"])
    _bar(top, 0, plan.paper_baseline, plan.paper_continued,
         f"{len(plan.paper_arms)} continued arms, up to {plan.paper_continued} epochs{stop}", COLOURS["continued"])
    _checkpoint(top, plan.paper_baseline, 1.45, 0.3)
    top.set_title(f"paper suite ({plan.profile} profile): the paper's protocol", fontsize=10.5, loc="left")
    _bar(bottom, 2, 0, plan.overfit_baseline, "baseline (FC, from ImageNet)", COLOURS["baseline"])
    _bar(bottom, 1, plan.overfit_baseline, plan.overfit_continued,
         f"{len(plan.overfit_arms)} continued arms,\n{plan.overfit_continued} epochs each", COLOURS["continued"])
    _bar(bottom, 0, 0, plan.overfit_baseline,
         f"{', '.join(plan.side_by_side)}: NODE head from ImageNet,\nthe baseline's recipe", COLOURS["imagenet"])
    _checkpoint(bottom, plan.overfit_baseline, 2.45, 1.3)
    images = f"{plan.overfit_images:,} training images, " if plan.overfit_images else ""
    bottom.set_title(f"overfit suite: the overfitting regime\n({images}no augmentation, long training)",
                     fontsize=10.5, loc="left")
    for ax, total in ((top, plan.paper_baseline + plan.paper_continued),
                      (bottom, plan.overfit_baseline + plan.overfit_continued)):
        ax.set_yticks([])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(0, total * 1.02)
        ax.set_xlabel("epochs from the ImageNet weights")
        ax.spines[["left", "right", "top"]].set_visible(False)
    top.set_ylim(-0.6, 2.2)
    bottom.set_ylim(-0.6, 3.2)
    fig.tight_layout()
    return fig
