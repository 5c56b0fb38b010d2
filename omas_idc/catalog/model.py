"""The structure catalog as frozen dataclasses: structures, model label rows, and their indexes.

The catalog is the one place where a model label maps to a structure, and where a structure
gets its SNOMED CT coding (PS3.3 C.8.20.2 Segment Description: category, type, type modifier,
anatomic region and its modifier) and display colour. Structures and model labels are two
tables (:mod:`omas_idc.catalog.tables` reads them): one row per structure, and one row per
(model, task, label) naming its structure, so that a new model family is rows of data. A DICOM
SEG segment is matched back to the catalog by its codes (:meth:`Catalog.by_codes`), never by
its label text.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omas_idc.choices import did_you_mean, suggestion
from omas_idc.errors import CatalogError

__all__ = [
    "CODE_FIELDS",
    "Catalog",
    "Code",
    "LabelRow",
    "Structure",
    "StructureKey",
]

#: The coded attributes of a structure (each has _code, _scheme, _meaning columns).
CODE_FIELDS = ("category", "type", "type_modifier", "region", "region_modifier")

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
class LabelRow:
    """One model label: which structure label ``label`` of ``model``'s task ``task`` is.

    Attributes
    ----------
    model
        The model family's card name (``"cads"``, ``"totalseg"``, a user's name).
    task
        The task id as the family's card names it (``"551"``, ``"total"``).
    label
        The label value in the task's label map (1 and up; 0 is background).
    label_name
        The model's own name of the label (its ``dataset.json`` name).
    structure
        The catalog structure's name.
    """

    model: str
    task: str
    label: int
    label_name: str
    structure: str


@dataclass(frozen=True)
class Structure:
    """One structure of the catalog: its coding and colour (its model labels are rows).

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


def _add(index: dict[Any, Any], key: object, value: Any, what: str, name: str) -> None:
    if key in index:
        first = index[key]
        first_name = first.name if isinstance(first, Structure) else first.structure
        raise CatalogError(
            f"{what} is given to both {first_name!r} and {name!r}; each must identify one structure"
        )
    index[key] = value


class Catalog:
    """The structures and model labels of the catalog, indexed by name, model label and codes.

    Parameters
    ----------
    structures
        The structures. Lookups must be unambiguous, so duplicate names or codes raise.
    labels
        The model label rows (every model family's label table). The models and their tasks
        are the ones these rows name, in row order.

    Raises
    ------
    CatalogError
        If two structures share a name or their identifying codes, a model label or label
        name is given twice in one task, or a label row names an unknown structure.
    """

    def __init__(self, structures: Sequence[Structure], labels: Iterable[LabelRow] = ()) -> None:
        self._structures = tuple(structures)
        self._labels = tuple(labels)
        self._by_name: dict[str, Structure] = {}
        self._by_key: dict[StructureKey, Structure] = {}
        self._rows: dict[tuple[str, str], dict[int, LabelRow]] = {}
        self._by_label_name: dict[tuple[str, str, str], LabelRow] = {}
        self._of_structure: dict[str, list[LabelRow]] = {}
        self._tasks: dict[str, list[str]] = {}
        for s in self._structures:
            _add(self._by_name, s.name, s, f"name {s.name!r}", s.name)
            _add(self._by_key, s.key, s, f"codes {s.key}", s.name)
        for row in self._labels:
            if row.structure not in self._by_name:
                raise CatalogError(
                    f"{row.model} task {row.task} label {row.label} names the structure "
                    f"{row.structure!r}, which is not in the catalog."
                    f"{suggestion(row.structure, self._by_name)} Name a catalog structure "
                    "(`omas-idc catalog list`) or add it to dicom_templates/structures.csv"
                )
            tasks = self._tasks.setdefault(row.model, [])
            if row.task not in tasks:
                tasks.append(row.task)
            where = f"{row.model} task {row.task}"
            per_task = self._rows.setdefault((row.model, row.task), {})
            _add(per_task, row.label, row, f"{where} label {row.label}", row.structure)
            _add(
                self._by_label_name,
                (row.model, row.task, row.label_name),
                row,
                f"{where} label name {row.label_name!r}",
                row.structure,
            )
            self._of_structure.setdefault(row.structure, []).append(row)

    def __iter__(self) -> Iterator[Structure]:
        return iter(self._structures)

    def __len__(self) -> int:
        return len(self._structures)

    @property
    def structures(self) -> tuple[Structure, ...]:
        """All structures, in file order."""
        return self._structures

    @property
    def labels(self) -> tuple[LabelRow, ...]:
        """All model label rows, in the order given."""
        return self._labels

    def with_labels(self, rows: Iterable[LabelRow]) -> Catalog:
        """This catalog extended with a model family's label rows (this one is unchanged).

        Rows of a model the catalog already maps must be exactly its rows (a built-in family
        loaded again); a family cannot add to, or replace, another family's labels.

        Raises
        ------
        CatalogError
            If a row names an unknown structure, repeats a label, or belongs to a model whose
            labels the catalog already holds with other rows.
        """
        new = tuple(rows)
        for model in dict.fromkeys(row.model for row in new):
            if model not in self._tasks:
                continue
            own = {row for row in new if row.model == model}
            if own != {row for row in self._labels if row.model == model}:
                raise CatalogError(
                    f"the catalog already maps the labels of model {model!r} with other rows; "
                    "give the family's card another name"
                )
            new = tuple(row for row in new if row.model != model)
        if not new:
            return self
        return Catalog(self._structures, (*self._labels, *new))

    def models(self) -> tuple[str, ...]:
        """The models whose labels the catalog maps, in the order of their rows."""
        return tuple(self._tasks)

    def tasks(self, model: str) -> tuple[str, ...]:
        """The tasks of ``model`` that have label rows, in row order."""
        if model not in self._tasks:
            raise did_you_mean(model, self._tasks, "model", CatalogError)
        return tuple(self._tasks[model])

    def _check_task(self, model: str, task: str | int) -> str:
        tasks = self.tasks(model)
        task_text = str(task)
        if task_text not in tasks:
            raise CatalogError(
                f"model {model!r} has no task {task_text!r}; its tasks are {', '.join(tasks)}."
                f"{suggestion(task_text, tasks)}"
            )
        return task_text

    def by_name(self, name: str) -> Structure:
        """The structure with this omas name (for example ``"kidney_left"`` or ``"body"``)."""
        try:
            return self._by_name[name]
        except KeyError:
            hint = suggestion(name, self._by_name, n=3)
            raise CatalogError(f"no structure named {name!r} in the catalog.{hint}") from None

    def labels_for(self, model: str, task: str | int) -> dict[int, Structure]:
        """The structures of one model task, by label number (background 0 excluded)."""
        task_text = self._check_task(model, task)
        rows = self._rows.get((model, task_text), {})
        return {label: self._by_name[rows[label].structure] for label in sorted(rows)}

    def label_row(self, model: str, task: str | int, label: int | str) -> LabelRow:
        """The label row of a model label, by number or by the model's own label name.

        Raises
        ------
        CatalogError
            If the label is not mapped: an unmapped label is an error, never a placeholder.
        """
        task_text = self._check_task(model, task)
        if isinstance(label, int):
            found = self._rows.get((model, task_text), {}).get(label)
        else:
            found = self._by_label_name.get((model, task_text, label))
        if found is None:
            raise CatalogError(
                f"{model} task {task_text} label {label!r} is not in the structure catalog; "
                f"add a row for it to the {model} family's label table (an unmapped label is "
                "an error, never a placeholder)"
            )
        return found

    def by_model_label(self, model: str, task: str | int, label: int | str) -> Structure:
        """The structure a model label maps to.

        Parameters
        ----------
        model
            A model whose labels the catalog maps (see :meth:`models`).
        task
            One of its tasks (see :meth:`tasks`), e.g. ``551`` or ``"total"``.
        label
            The label number in the task's label map, or the model's own label name.

        Raises
        ------
        CatalogError
            If the label is not mapped: an unmapped label is an error, never a placeholder.
        """
        return self._by_name[self.label_row(model, task, label).structure]

    def labels_of(self, structure: str) -> tuple[LabelRow, ...]:
        """Every model label that maps to the structure named ``structure``."""
        return tuple(self._of_structure.get(structure, ()))

    def label_of(self, structure: str, model: str) -> LabelRow | None:
        """The label of ``model`` that maps to ``structure``, or ``None`` where it has none.

        Raises
        ------
        CatalogError
            If several tasks of ``model`` map the structure (ask :meth:`labels_of`).
        """
        rows = [row for row in self.labels_of(structure) if row.model == model]
        if len(rows) > 1:
            tasks = ", ".join(row.task for row in rows)
            raise CatalogError(f"{structure} has labels in several {model} tasks ({tasks})")
        return rows[0] if rows else None

    def resolve_labels(
        self, model: str, task: str | int, labels: Mapping[int, str]
    ) -> dict[int, Structure]:
        """The structures of a task's labels (value -> model label name).

        For a model the catalog maps (see :meth:`models`) the label value decides and the name
        must agree with the label row (its label name or its structure's name); any other
        model (a model trained with omas-idc without a label table) names its labels by catalog
        structure name, which decides.

        Raises
        ------
        CatalogError
            If a label is not mapped, or its name disagrees with the catalog.
        """
        resolved: dict[int, Structure] = {}
        for value, name in labels.items():
            if model in self._tasks:
                row = self.label_row(model, task, int(value))
                if name not in (row.label_name, row.structure):
                    raise CatalogError(
                        f"{model} task {task} label {value} is {row.label_name!r} in the "
                        f"catalog, but the label map calls it {name!r}"
                    )
                structure = self._by_name[row.structure]
            else:
                structure = self.by_name(name)
            resolved[int(value)] = structure
        return resolved

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
