"""The Compute Engine machines a Cloud Batch job may ask for: families, types, GPUs.

The table is data (``machines.csv`` beside this module, shipped in the wheel, its sources in
its header): one row per machine family and GPU type it takes, and one row per machine type
with its vCPUs, memory and built-in GPUs. A machine type not in the table may still be used;
its resources must then be given explicitly.

Two optional columns give list prices per hour (on-demand and spot, USD): of a machine type
(with its built-in GPUs), and, on a family row, of one attached GPU (N1). An empty price is
unknown, never zero. The header's ``# price-region:`` and ``# price-source:`` lines say where
and when the prices were read (``omas-idc batch estimate`` prints them).
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType

from omas_idc.errors import ConfigurationError

__all__ = ["GPU_TYPES", "MachineTable", "MachineType", "machine_table", "parse_machine_table"]

_COLUMNS = ("family", "machine_type", "vcpus", "memory_gb", "gpu_type", "gpu_count")
_PRICE_COLUMNS = ("on_demand_usd_hour", "spot_usd_hour")


@dataclass(frozen=True)
class MachineType:
    """One Compute Engine machine type.

    Attributes
    ----------
    name
        The machine type, e.g. ``"g2-standard-8"``.
    family
        Its family, e.g. ``"g2"`` or ``"a2-highgpu"``.
    vcpus, memory_gb
        Its vCPUs and memory (GB as Compute Engine counts them, i.e. GiB).
    gpu_type
        The GPU type built in, or ``None``.
    gpu_count
        The GPUs built in; 0 if it takes no GPU; ``None`` if GPUs are attached (N1).
    on_demand_usd_hour, spot_usd_hour
        List price per hour with the built-in GPUs (``None``: not known).
    """

    name: str
    family: str
    vcpus: int
    memory_gb: float
    gpu_type: str | None
    gpu_count: int | None
    on_demand_usd_hour: float | None = None
    spot_usd_hour: float | None = None


@dataclass(frozen=True)
class MachineTable:
    """The machine families and types of ``machines.csv``.

    Attributes
    ----------
    family_gpus
        Family -> the GPU types it takes (built in or attached), in the table's order.
    machines
        Machine type name -> :class:`MachineType`.
    gpu_prices
        (family, GPU type) -> (on-demand, spot) price per hour of one attached GPU; ``None``
        where not known.
    price_region, price_source
        Where the prices hold and where and when they were read (from the header).
    """

    family_gpus: Mapping[str, tuple[str, ...]]
    machines: Mapping[str, MachineType]
    gpu_prices: Mapping[tuple[str, str], tuple[float | None, float | None]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    price_region: str = ""
    price_source: str = ""

    @property
    def gpu_types(self) -> tuple[str, ...]:
        """Every GPU type some family takes, in the table's order."""
        return tuple(dict.fromkeys(g for gpus in self.family_gpus.values() for g in gpus))

    def family(self, machine_type: str) -> str:
        """The family of a machine type: ``a2-highgpu-1g`` -> ``a2-highgpu``, ``g2-x`` -> ``g2``."""
        parts = machine_type.split("-")
        two = "-".join(parts[:2])
        return two if two in self.family_gpus else parts[0]

    def gpus_taken(self, machine_type: str) -> tuple[str, ...] | None:
        """The GPU types ``machine_type``'s family takes (``None`` if none or unknown)."""
        return self.family_gpus.get(self.family(machine_type))


def parse_machine_table(text: str, source: str = "machines.csv") -> MachineTable:
    """Read a machine table in ``machines.csv``'s format (``#`` lines are comments).

    Parameters
    ----------
    text
        The CSV text.
    source
        Its name, for messages.

    Raises
    ------
    ConfigurationError
        If a column is missing, a value is not a number, a price is negative, a family row
        names no GPU type, or a machine type's family or built-in GPU disagrees with the
        family rows.
    """
    header: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.lstrip("# ").partition(":")
        if line.startswith("#") and key in ("price-region", "price-source"):
            header[key] = " ".join([header.get(key, ""), value.strip()]).strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if tuple(reader.fieldnames or ()) not in (_COLUMNS, _COLUMNS + _PRICE_COLUMNS):
        raise ConfigurationError(
            f"{source}: columns {reader.fieldnames} are not {list(_COLUMNS)} (optionally "
            f"followed by {list(_PRICE_COLUMNS)})",
            reason="machines",
        )
    family_gpus: dict[str, list[str]] = {}
    machines: dict[str, MachineType] = {}
    gpu_prices: dict[tuple[str, str], tuple[float | None, float | None]] = {}
    for number, row in enumerate(reader, start=1):
        where = f"{source} data row {number}"
        family, name, gpu_type = row["family"], row["machine_type"], row["gpu_type"] or None
        prices = _prices(row, where)
        if not name:
            if gpu_type is None:
                raise ConfigurationError(
                    f"{where}: a family row needs a GPU type", reason="machines"
                )
            family_gpus.setdefault(family, []).append(gpu_type)
            gpu_prices[(family, gpu_type)] = prices
            continue
        try:
            count = int(row["gpu_count"]) if row["gpu_count"] else None
            vcpus, memory_gb = int(row["vcpus"]), float(row["memory_gb"])
        except ValueError as err:
            raise ConfigurationError(
                f"{where}: {err}; vcpus and gpu_count are integers, memory_gb a number",
                reason="machines",
            ) from err
        machines[name] = MachineType(name, family, vcpus, memory_gb, gpu_type, count, *prices)
    table = MachineTable(
        MappingProxyType({f: tuple(g) for f, g in family_gpus.items()}),
        MappingProxyType(machines),
        MappingProxyType(gpu_prices),
        header.get("price-region", ""),
        header.get("price-source", ""),
    )
    for machine in machines.values():
        if table.family(machine.name) != machine.family:
            raise ConfigurationError(
                f"{source}: {machine.name} is of family {table.family(machine.name)}, "
                f"not {machine.family}",
                reason="machines",
            )
        if machine.gpu_type and machine.gpu_type not in (table.gpus_taken(machine.name) or ()):
            raise ConfigurationError(
                f"{source}: {machine.name} has {machine.gpu_type} built in, which no row of "
                f"family {machine.family} names",
                reason="machines",
            )
    return table


def _prices(row: Mapping[str, str | None], where: str) -> tuple[float | None, float | None]:
    """(on-demand, spot) of a row; ``None`` where empty or the columns are absent."""
    values = []
    for column in _PRICE_COLUMNS:
        text = (row.get(column) or "").strip()
        try:
            value = float(text) if text else None
        except ValueError as err:
            raise ConfigurationError(
                f"{where}: {column} {text!r} is not a number (USD per hour, empty if unknown)",
                reason="machines",
            ) from err
        if value is not None and value < 0:
            raise ConfigurationError(f"{where}: {column} is negative", reason="machines")
        values.append(value)
    return values[0], values[1]


@functools.cache
def machine_table() -> MachineTable:
    """The machine table shipped with omas-idc (``machines.csv``).

    Raises
    ------
    ConfigurationError
        If the shipped table is malformed (a broken installation).
    """
    text = (
        resources.files("omas_idc.run.batch").joinpath("machines.csv").read_text(encoding="utf-8")
    )
    return parse_machine_table(text, "machines.csv")


#: Accelerator types Compute Engine attaches to Batch VMs.
GPU_TYPES = machine_table().gpu_types
