"""The Compute Engine machines a Cloud Batch job may ask for: families, types, GPUs.

The table is data (``machines.csv`` beside this module, shipped in the wheel, its sources in
its header): one row per machine family and GPU type it takes, and one row per machine type
with its vCPUs, memory and built-in GPUs. A machine type not in the table may still be used;
its resources must then be given explicitly.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType

from omas_idc.errors import ConfigurationError

__all__ = ["GPU_TYPES", "MachineTable", "MachineType", "machine_table", "parse_machine_table"]

_COLUMNS = ("family", "machine_type", "vcpus", "memory_gb", "gpu_type", "gpu_count")


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
    """

    name: str
    family: str
    vcpus: int
    memory_gb: float
    gpu_type: str | None
    gpu_count: int | None


@dataclass(frozen=True)
class MachineTable:
    """The machine families and types of ``machines.csv``.

    Attributes
    ----------
    family_gpus
        Family -> the GPU types it takes (built in or attached), in the table's order.
    machines
        Machine type name -> :class:`MachineType`.
    """

    family_gpus: Mapping[str, tuple[str, ...]]
    machines: Mapping[str, MachineType]

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
        If a column is missing, a value is not a number, a family row names no GPU type, or a
        machine type's family or built-in GPU disagrees with the family rows.
    """
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    if tuple(reader.fieldnames or ()) != _COLUMNS:
        raise ConfigurationError(
            f"{source}: columns {reader.fieldnames} are not {list(_COLUMNS)}", reason="machines"
        )
    family_gpus: dict[str, list[str]] = {}
    machines: dict[str, MachineType] = {}
    for number, row in enumerate(reader, start=1):
        where = f"{source} data row {number}"
        family, name, gpu_type = row["family"], row["machine_type"], row["gpu_type"] or None
        if not name:
            if gpu_type is None:
                raise ConfigurationError(
                    f"{where}: a family row needs a GPU type", reason="machines"
                )
            family_gpus.setdefault(family, []).append(gpu_type)
            continue
        try:
            count = int(row["gpu_count"]) if row["gpu_count"] else None
            vcpus, memory_gb = int(row["vcpus"]), float(row["memory_gb"])
        except ValueError as err:
            raise ConfigurationError(
                f"{where}: {err}; vcpus and gpu_count are integers, memory_gb a number",
                reason="machines",
            ) from err
        machines[name] = MachineType(name, family, vcpus, memory_gb, gpu_type, count)
    table = MachineTable(
        MappingProxyType({f: tuple(g) for f, g in family_gpus.items()}),
        MappingProxyType(machines),
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
