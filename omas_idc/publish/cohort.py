"""Cohort views of a release table: structure volumes and QA flags across series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["FLAG_COLUMNS", "flag_summary", "load_release_table", "plot_flags", "plot_volumes"]

#: The QA flags of the release table (IDC's four rules and the plausibility ranges).
FLAG_COLUMNS = (
    "flag_truncated",
    "flag_split",
    "flag_wrong_side",
    "flag_implausible_volume",
    "flag_small_volume",
)


def load_release_table(path: str | Path) -> Any:
    """A release table (one parquet file or a folder of shard files) as a pandas DataFrame."""
    import pandas as pd
    import pyarrow.parquet as pq

    target = Path(path)
    files = sorted(target.rglob("*.parquet")) if target.is_dir() else [target]
    if not files:
        raise FileNotFoundError(f"no release table (*.parquet) at {target}")
    frames = [pq.read_table(f).to_pandas() for f in files]
    return pd.concat(frames, ignore_index=True)


def flag_summary(table: Any) -> Any:
    """Per structure: series where it is present and how often each QA flag is raised."""
    present = table[table["status"] == "present"]
    summary = present.groupby("structure")[list(FLAG_COLUMNS)].sum().astype(int)
    summary.insert(0, "present", present.groupby("structure").size())
    return summary.sort_values("present", ascending=False)


def plot_volumes(table: Any, structures: list[str] | None = None, ax: Any = None) -> Any:
    """Box plot of each structure's volume (mL) across the series where it is present."""
    import matplotlib.pyplot as plt

    present = table[(table["status"] == "present") & table["volume_ml"].notna()]
    names = structures or sorted(present["structure"].unique())
    data = [present.loc[present["structure"] == n, "volume_ml"].to_numpy() for n in names]
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 0.4 * len(names)), 4))
    ax.boxplot(data, tick_labels=names, vert=True)
    ax.set_ylabel("volume (mL)")
    ax.set_title(f"Structure volumes across {table['source_series_instance_uid'].nunique()} series")
    ax.tick_params(axis="x", rotation=90)
    return ax


def plot_flags(table: Any, ax: Any = None) -> Any:
    """Bar chart: how many segments raise each QA flag, and the verdicts."""
    import matplotlib.pyplot as plt

    present = table[table["status"] == "present"]
    counts = [int(present[c].sum()) for c in FLAG_COLUMNS]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    ax.bar([c.removeprefix("flag_") for c in FLAG_COLUMNS], counts)
    verdicts = present["verdict"].value_counts().to_dict()
    verdict_text = ", ".join(f"{k}: {v}" for k, v in sorted(verdicts.items()))
    ax.set_title(f"QA flags over {len(present)} segments ({verdict_text})")
    ax.set_ylabel("segments")
    ax.tick_params(axis="x", rotation=30)
    return ax
