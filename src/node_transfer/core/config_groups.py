"""The config's fields in groups (data, backbone, head, solve, ...), one declaration each: a group is named at the
field it starts with, and every field after it belongs to it until the next group starts.

`node-transfer run --help` shows one argument group per config group (as timm's `train.py` does), and the
parameters cell of `book/experiment.md` (written by `node-transfer readme`) one commented block each; a new field
lands in the group of its place in `ExperimentConfig`.
"""

from __future__ import annotations

import typing
from dataclasses import MISSING, fields

from .config import ExperimentConfig

#: The first field of each group, and the group's title.
GROUP_STARTS = {"dataset": "data", "backbone": "backbone", "head": "head", "solver": "solve",
                "regularization": "NODE options beyond the paper", "optimizer": "optimisation",
                "epochs": "training run", "out": "output"}


#: The longest line of the generated cell (the book's code is linted at the package's line length).
LINE_LENGTH = 120


def config_groups() -> dict[str, list[str]]:
    """{group title: its field names}, in declaration order."""
    groups: dict[str, list[str]] = {}
    title = None
    for name in ExperimentConfig.field_names():
        title = GROUP_STARTS.get(name, title)
        if title is None:
            raise ValueError(f"ExperimentConfig's first field {name!r} starts no group of GROUP_STARTS")
        groups.setdefault(title, []).append(name)
    return groups


def _annotation(hint: typing.Any) -> str:
    """'int', 'Optional[float]': a field's type as the parameters cell writes it (papermill reads these)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return f"Optional[{args[0].__name__}]" if args else hint.__name__


def parameters_source() -> str:
    """The body of `book/experiment.md`'s parameters cell: every field with its type, default and help text (its
    choices in braces), one commented block per group."""
    hints = typing.get_type_hints(ExperimentConfig)
    by_name = {f.name: f for f in fields(ExperimentConfig)}
    lines = []
    for title, names in config_groups().items():
        lines.append(f"# {title}")
        for name in names:
            f = by_name[name]
            default = f.default if f.default is not MISSING else None
            line = f"{name}: {_annotation(hints[name])} = {default!r}"
            words = f.metadata.get("help", "")
            choices = f"{{{', '.join(f.metadata['choices'])}}}" if f.metadata.get("choices") else ""
            together = " ".join(part for part in (words, choices) if part)
            if len(f"{line}  # {together}") <= LINE_LENGTH:
                lines.append(f"{line}  # {together}" if together else line)
            else:  # the choices on a comment line of their own
                lines += [f"{line}  # {words}", f"# {name}: {choices}"] if choices else [f"{line}  # {words}"]
    return "\n".join(lines)
