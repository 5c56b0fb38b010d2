"""The catalog rules on model label rows: ``labels`` (complete, unique, known structures, and
agreeing with a reference class list) and ``color`` (distinct colours within a label map).

They know no model by name: a model family is its label rows.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from omas_idc.catalog.issues import Issue
from omas_idc.catalog.model import LabelRow, Structure
from omas_idc.choices import suggestion

__all__ = ["MIN_DELTA_E", "check_class_lists", "check_colors", "check_labels", "delta_e"]

#: Least CIE76 colour difference of two structures of one label map.
MIN_DELTA_E = 10.0


def check_labels(
    structures: Sequence[Structure], labels: Sequence[LabelRow], issues: list[Issue]
) -> None:
    """Rule ``labels``: every row names a structure; each task's labels are 1..N, each given
    once, with distinct label names."""
    names = {s.name for s in structures}
    per_task: dict[tuple[str, str], dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    label_names: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for row in labels:
        where = f"{row.model} {row.task}"
        if row.structure not in names:
            issues.append(
                Issue(
                    where,
                    "labels",
                    f"label {row.label} ({row.label_name}) names the unknown structure "
                    f"{row.structure!r}.{suggestion(row.structure, names)}",
                )
            )
        per_task[(row.model, row.task)][row.label].append(row.structure)
        label_names[(row.model, row.task, row.label_name)].append(row.label)
    for (model, task), by_label in per_task.items():
        for label in sorted(set(range(1, max(by_label) + 1)) - by_label.keys()):
            issues.append(Issue(f"{model} {task}", "labels", f"label {label} is not mapped"))
        for label, mapped in sorted(by_label.items()):
            if len(mapped) > 1:
                issues.append(
                    Issue(mapped[1], "labels", f"label ({task}, {label}) also maps to {mapped[0]}")
                )
    for (model, task, label_name), values in label_names.items():
        if len(values) > 1:
            issues.append(
                Issue(
                    f"{model} {task}",
                    "labels",
                    f"labels {values} share the label name {label_name!r}",
                )
            )


def _lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    def linear(c: int) -> float:
        x = c / 255
        return x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in rgb)
    xyz = (
        (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047,
        0.2126 * r + 0.7152 * g + 0.0722 * b,
        (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883,
    )
    fx, fy, fz = (t ** (1 / 3) if t > 0.008856 else 7.787 * t + 16 / 116 for t in xyz)
    return 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)


def delta_e(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    """CIE76 colour difference of two 8-bit sRGB colours (about 2.3 is just noticeable)."""
    return math.dist(_lab(a), _lab(b))


def check_colors(
    structures: Sequence[Structure], labels: Sequence[LabelRow], issues: list[Issue]
) -> None:
    """Rule ``color``: structures of one label map differ by Delta E >= :data:`MIN_DELTA_E`."""
    by_name = {s.name: s for s in structures}
    label_maps: dict[str, list[Structure]] = defaultdict(list)
    for row in labels:
        if row.structure in by_name:
            label_maps[f"{row.model} {row.task}"].append(by_name[row.structure])
    for label_map, members in label_maps.items():
        for a, b in itertools.combinations(members, 2):
            if delta_e(a.color_rgb, b.color_rgb) < MIN_DELTA_E:
                issues.append(
                    Issue(
                        b.name,
                        "color",
                        f"colour {b.color_rgb} is too close to {a.name}'s {a.color_rgb} in the "
                        f"{label_map} label map (Delta E < {MIN_DELTA_E:g})",
                    )
                )


def check_class_lists(labels: Sequence[LabelRow], reference_dir: Path, issues: list[Issue]) -> None:
    """Label rows against ``<model>_classes.txt`` where the reference folder has one.

    A class list is tab-separated: index, label name, display name, task, label, ... (the form
    of ``cads_classes.txt``, taken from CADS' ``bodyparts_labelmaps.py``).
    """
    for model in dict.fromkeys(row.model for row in labels):
        path = reference_dir / f"{model}_classes.txt"
        if not path.is_file():
            continue
        listed = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            if line and not line.startswith("#"):
                _, internal, _, task, label, *_ = line.split("\t")
                listed.add((task, int(label), internal))
        for row in labels:
            if row.model == model and (row.task, row.label, row.label_name) not in listed:
                issues.append(
                    Issue(
                        row.structure,
                        "labels",
                        f"{model} task {row.task} label {row.label} is not {row.label_name!r} "
                        f"in {path.name}",
                    )
                )
