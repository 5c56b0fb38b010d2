"""The structure catalog: rows of ``dicom_templates/catalog.csv`` as frozen dataclasses.

The catalog is the one place where a model label maps to a structure, and where a structure
gets its SNOMED CT coding (PS3.3 C.8.20.2 Segment Description: category, type, type modifier,
anatomic region and its modifier) and display colour. A DICOM SEG segment is matched back to
the catalog by its codes (:meth:`Catalog.by_codes`), never by its label text.
"""

from __future__ import annotations

import csv
import difflib
import functools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omas_idc.errors import CatalogError
from omas_idc.resources import template_path

__all__ = [
    "MODELS",
    "CadsLabel",
    "Catalog",
    "Code",
    "Structure",
    "StructureKey",
    "TotalSegLabel",
    "load_catalog",
    "read_catalog_csv",
]

#: The models whose labels the catalog maps, and the tasks of each.
MODELS: dict[str, tuple[str, ...]] = {
    "cads": tuple(str(task) for task in range(551, 560)),
    "totalseg": ("total",),
}

#: The coded attributes of a row, in column order (each has _code, _scheme, _meaning columns).
CODE_FIELDS = ("category", "type", "type_modifier", "region", "region_modifier")

COLUMNS = (
    "name",
    "cads_task",
    "cads_label",
    "cads_name",
    "totalseg_label",
    "totalseg_name",
    *(f"{field}_{part}" for field in CODE_FIELDS for part in ("code", "scheme", "meaning")),
    "color_rgb",
    "outside_part16_source",
    "notes",
)

#: (type scheme, type value, modifier value, region value, region modifier value)
StructureKey = tuple[str, str, "str | None", "str | None", "str | None"]


@dataclass(frozen=True)
class Code:
    """A coded concept: (CodeValue, CodingSchemeDesignator, CodeMeaning)."""

    value: str
    scheme: str
    meaning: str

    def __str__(self) -> str:
        return f'({self.value}, {self.scheme}, "{self.meaning}")'


@dataclass(frozen=True)
class CadsLabel:
    """A CADS class: nnU-Net task (551-559), label within the task, and CADS' internal name."""

    task: int
    label: int
    name: str


@dataclass(frozen=True)
class TotalSegLabel:
    """A TotalSegmentator class of the ``total`` task: label (1-117) and name."""

    label: int
    name: str
    task: str = "total"


@dataclass(frozen=True)
class Structure:
    """One row of the catalog: a structure, its coding, colour and model labels.

    Attributes
    ----------
    name
        Stable omas name (snake_case, laterality as a ``_left``/``_right`` suffix).
    category, type
        Segmented Property Category (CID 7150) and Type (CID 7151 where Part 16 has one).
    type_modifier
        Laterality of the type (SCT 7771000 Left / 24028007 Right), or ``None``.
    region, region_modifier
        Anatomic region and its laterality, for findings coded by location (kidney cysts).
    color_rgb
        Recommended display colour, 8-bit RGB.
    cads, totalseg
        The model labels that map to this structure, or ``None``.
    outside_part16_source
        For a type code outside DICOM Part 16: the reference mapping(s) that give it with this
        meaning; ``None`` where the type is a Part 16 concept.
    notes
        Why a choice was made where the public mappings disagree.
    """

    name: str
    category: Code
    type: Code
    type_modifier: Code | None
    region: Code | None
    region_modifier: Code | None
    color_rgb: tuple[int, int, int]
    cads: CadsLabel | None
    totalseg: TotalSegLabel | None
    outside_part16_source: str | None
    notes: str

    @property
    def key(self) -> StructureKey:
        """The codes that identify the structure in a SEG: type, its modifier, region, modifier."""
        return (
            self.type.scheme,
            self.type.value,
            self.type_modifier.value if self.type_modifier else None,
            self.region.value if self.region else None,
            self.region_modifier.value if self.region_modifier else None,
        )

    @property
    def outside_part16(self) -> bool:
        """Whether the type code is valid SNOMED CT but not in the DICOM Part 16 dictionary."""
        return self.outside_part16_source is not None

    def models(self) -> tuple[str, ...]:
        """The models that have a label for this structure."""
        return tuple(m for m, lab in (("cads", self.cads), ("totalseg", self.totalseg)) if lab)


def _code(row: dict[str, str], field: str, where: str) -> Code | None:
    value, scheme, meaning = (
        row[f"{field}_{part}"].strip() for part in ("code", "scheme", "meaning")
    )
    if not (value or scheme or meaning):
        return None
    if not (value and scheme and meaning):
        raise CatalogError(
            f"{where}: {field} needs code, scheme and meaning, got ({value!r}, {scheme!r}, "
            f"{meaning!r}); fill in all three or leave all three empty"
        )
    return Code(value, scheme, meaning)


def _int(text: str, column: str, where: str) -> int:
    try:
        return int(text)
    except ValueError as err:
        raise CatalogError(f"{where}: {column} must be an integer, got {text!r}") from err


def _color(text: str, where: str) -> tuple[int, int, int]:
    parts = text.split()
    if len(parts) != 3 or not all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
        raise CatalogError(
            f"{where}: color_rgb must be three integers 0-255 separated by spaces, got {text!r}"
        )
    return int(parts[0]), int(parts[1]), int(parts[2])


def parse_row(row: dict[str, str], where: str = "row") -> Structure:
    """Build a :class:`Structure` from one CSV row (a dict of the catalog's columns).

    Raises
    ------
    CatalogError
        If a column is missing or malformed; the message names the row and the column.
    """
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise CatalogError(f"{where}: missing columns {missing}")
    name = row["name"].strip()
    where = f"{where} ({name or 'no name'})"
    if not name:
        raise CatalogError(f"{where}: every structure needs a name")
    category = _code(row, "category", where)
    type_ = _code(row, "type", where)
    if category is None or type_ is None:
        raise CatalogError(
            f"{where}: category and type are required; an unmapped label is an error, "
            "never a placeholder: code the structure or remove the label"
        )
    cads = None
    if row["cads_task"].strip() or row["cads_label"].strip() or row["cads_name"].strip():
        cads = CadsLabel(
            _int(row["cads_task"], "cads_task", where),
            _int(row["cads_label"], "cads_label", where),
            row["cads_name"].strip(),
        )
    totalseg = None
    if row["totalseg_label"].strip() or row["totalseg_name"].strip():
        totalseg = TotalSegLabel(
            _int(row["totalseg_label"], "totalseg_label", where), row["totalseg_name"].strip()
        )
    return Structure(
        name=name,
        category=category,
        type=type_,
        type_modifier=_code(row, "type_modifier", where),
        region=_code(row, "region", where),
        region_modifier=_code(row, "region_modifier", where),
        color_rgb=_color(row["color_rgb"], where),
        cads=cads,
        totalseg=totalseg,
        outside_part16_source=row["outside_part16_source"].strip() or None,
        notes=row["notes"].strip(),
    )


def read_catalog_csv(path: Path) -> list[Structure]:
    """Read a catalog CSV file into structures, without validating the coding.

    Raises
    ------
    CatalogError
        If the file cannot be parsed.
    """
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or list(reader.fieldnames) != list(COLUMNS):
            raise CatalogError(
                f"{path}: the header must be exactly {','.join(COLUMNS)}; got {reader.fieldnames}"
            )
        return [parse_row(row, f"{path.name} line {i}") for i, row in enumerate(reader, start=2)]


def _check_model(model: str, task: str | int) -> str:
    if model not in MODELS:
        close = difflib.get_close_matches(model, MODELS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise CatalogError(f"unknown model {model!r}; the catalog maps {sorted(MODELS)}.{hint}")
    task_text = str(task)
    if task_text not in MODELS[model]:
        raise CatalogError(
            f"model {model!r} has no task {task_text!r}; its tasks are {', '.join(MODELS[model])}"
        )
    return task_text


class Catalog:
    """The structures of the catalog, indexed by name, model label and codes.

    Parameters
    ----------
    structures
        The rows. Lookups must be unambiguous, so duplicate names, model labels or codes raise.

    Raises
    ------
    CatalogError
        If two structures share a name, a model label or their identifying codes.
    """

    def __init__(self, structures: Sequence[Structure]) -> None:
        self._structures = tuple(structures)
        self._by_name: dict[str, Structure] = {}
        self._by_label: dict[tuple[str, str], dict[int, Structure]] = {}
        self._by_label_name: dict[tuple[str, str, str], Structure] = {}
        self._by_key: dict[StructureKey, Structure] = {}
        for s in self._structures:
            self._add(self._by_name, s.name, s, f"name {s.name!r}")
            self._add(self._by_key, s.key, s, f"codes {s.key}")
            labels: list[tuple[str, str, int, str]] = []
            if s.cads:
                labels.append(("cads", str(s.cads.task), s.cads.label, s.cads.name))
            if s.totalseg:
                labels.append(("totalseg", s.totalseg.task, s.totalseg.label, s.totalseg.name))
            for model, task, label, label_name in labels:
                per_task = self._by_label.setdefault((model, task), {})
                self._add(per_task, label, s, f"{model} task {task} label {label}")
                self._add(
                    self._by_label_name, (model, task, label_name), s, f"{model} {label_name!r}"
                )

    @staticmethod
    def _add(index: dict[Any, Structure], key: object, s: Structure, what: str) -> None:
        if key in index:
            raise CatalogError(
                f"{what} is given to both {index[key].name!r} and {s.name!r}; "
                "each must identify one structure"
            )
        index[key] = s

    def __iter__(self) -> Iterator[Structure]:
        return iter(self._structures)

    def __len__(self) -> int:
        return len(self._structures)

    @property
    def structures(self) -> tuple[Structure, ...]:
        """All rows, in file order."""
        return self._structures

    def by_name(self, name: str) -> Structure:
        """The structure with this omas name (for example ``"kidney_left"`` or ``"body"``)."""
        try:
            return self._by_name[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._by_name, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            raise CatalogError(f"no structure named {name!r} in the catalog.{hint}") from None

    def labels_for(self, model: str, task: str | int) -> dict[int, Structure]:
        """The structures of one model task, by label number (background 0 excluded)."""
        task_text = _check_model(model, task)
        return dict(sorted(self._by_label.get((model, task_text), {}).items()))

    def resolve_labels(
        self, model: str, task: str | int, labels: Mapping[int, str]
    ) -> dict[int, Structure]:
        """The structures of a task's labels (value -> model label name).

        For the models the catalog maps (``cads``, ``totalseg``) the label value decides and
        the name must agree; any other model (a model trained with omas-idc, e.g. the demo
        model) names its labels by catalog structure name, which decides.

        Raises
        ------
        CatalogError
            If a label is not mapped, or its name disagrees with the catalog.
        """
        resolved: dict[int, Structure] = {}
        for value, name in labels.items():
            if model in MODELS:
                structure = self.by_model_label(model, task, int(value))
                own = structure.cads if model == "cads" else structure.totalseg
                if own is not None and name not in (own.name, structure.name):
                    raise CatalogError(
                        f"{model} task {task} label {value} is {own.name!r} in the catalog, "
                        f"but the label map calls it {name!r}"
                    )
            else:
                structure = self.by_name(name)
            resolved[int(value)] = structure
        return resolved

    def by_model_label(self, model: str, task: str | int, label: int | str) -> Structure:
        """The structure a model label maps to.

        Parameters
        ----------
        model
            ``"cads"`` or ``"totalseg"``.
        task
            CADS task 551-559, or ``"total"`` for TotalSegmentator.
        label
            The label number in the task's label map, or the model's own label name.

        Raises
        ------
        CatalogError
            If the label is not mapped: an unmapped label is an error, never a placeholder.
        """
        task_text = _check_model(model, task)
        if isinstance(label, int):
            found = self._by_label.get((model, task_text), {}).get(label)
        else:
            found = self._by_label_name.get((model, task_text, label))
        if found is None:
            raise CatalogError(
                f"{model} task {task_text} label {label!r} is not in the structure catalog; "
                "add a row for it to dicom_templates/catalog.csv (an unmapped label is an "
                "error, never a placeholder)"
            )
        return found

    def by_codes(
        self,
        type_code: Code | str,
        modifier: Code | str | None = None,
        *,
        region: Code | str | None = None,
        region_modifier: Code | str | None = None,
    ) -> Structure:
        """The structure a SEG segment describes, matched by its codes (never its label text).

        Parameters
        ----------
        type_code
            SegmentedPropertyTypeCodeSequence, as a :class:`Code` or an SCT code value.
        modifier
            SegmentedPropertyTypeModifierCodeSequence (laterality), if any.
        region, region_modifier
            AnatomicRegionSequence and its modifier, for structures coded by location.

        Raises
        ------
        CatalogError
            If no structure has exactly these codes.
        """
        scheme = type_code.scheme if isinstance(type_code, Code) else "SCT"

        def value(code: Code | str | None) -> str | None:
            return code.value if isinstance(code, Code) else code

        key: StructureKey = (
            scheme,
            str(value(type_code)),
            value(modifier),
            value(region),
            value(region_modifier),
        )
        try:
            return self._by_key[key]
        except KeyError:
            raise CatalogError(
                f"no structure in the catalog is coded {key} (type scheme, type, modifier, "
                "region, region modifier)"
            ) from None

    def outside_part16(self) -> list[Structure]:
        """The structures whose type code is SNOMED CT but not in DICOM Part 16."""
        return [s for s in self._structures if s.outside_part16]


def default_catalog_path() -> Path:
    """The shipped ``dicom_templates/catalog.csv``."""
    return template_path("catalog.csv")


@functools.lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    """The shipped catalog, checked against DICOM Part 16 (cached).

    Raises
    ------
    CatalogError
        If the shipped catalog breaks a validation rule (see :func:`validate_structures`).
    """
    from omas_idc.catalog.validate import validate_structures

    structures = read_catalog_csv(default_catalog_path())
    report = validate_structures(structures)
    if report.errors:
        listed = "\n".join(f"  {issue}" for issue in report.errors)
        raise CatalogError(
            f"the structure catalog {default_catalog_path()} is invalid:\n{listed}\n"
            "Run `omas-idc catalog validate` for the full report."
        )
    return Catalog(structures)
