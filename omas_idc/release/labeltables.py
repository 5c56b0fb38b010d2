"""Per-dataset label tables and metadata: which label value is which catalog structure.

A label-tables folder holds ``datasets.toml`` and one CSV per dataset::

    # datasets.toml
    [datasets.abdomen-ct]              # the dataset name used in the manifest
    version = "1.0"                     # part of every derived UID
    annotation_type = "MANUAL"          # MANUAL | SEMIAUTOMATIC | AUTOMATIC
    annotator = "Doe^Jane"              # ContentCreatorName (PN) of the SEG, optional
    algorithm = "MONAI Label"           # required unless MANUAL
    algorithm_version = "0.8"           # optional
    licence = "CC BY 4.0"
    citation = "Doe J et al. ..."
    label_table = "abdomen-ct.csv"      # optional; default <dataset>.csv beside the TOML

    # abdomen-ct.csv
    label,structure,source_name
    1,liver,Liver
    2,kidney_left,Kidney (L)

``label`` is the positive integer value in the dataset's NIfTI files, ``structure`` the catalog
name (:meth:`omas_idc.catalog.Catalog.by_name`), ``source_name`` (optional) the dataset's own
name, kept for the record. The table lists every structure the dataset annotated: a structure
it lists but a case's labels lack is *annotated but absent* where the case's label map covers
the whole series, and *not annotated* where the label map is cropped to part of the series
(the structure may lie outside the crop); one it does not list is *not annotated* (see
:mod:`omas_idc.release.annotations`).

Segment Algorithm Type (PS3.3 C.8.20.2): ``MANUAL`` segments carry no algorithm
identification; ``SEMIAUTOMATIC`` (and ``AUTOMATIC``) ones carry the algorithm's name and
version. A table that names an unknown structure, repeats a label or a structure, or has a
label that is not a positive integer makes every case of its dataset a refusal with a named
reason, never a placeholder code.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from omas_idc.catalog.model import Catalog, Structure
from omas_idc.encode.provenance import Provenance
from omas_idc.errors import CatalogError, ConfigurationError
from omas_idc.release.errors import ReleaseError
from omas_idc.release.manifest import SAFE_NAME

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "ANNOTATION_TYPES",
    "DATASETS_FILE",
    "AnnotatedDataset",
    "DatasetRegistry",
    "load_label_tables",
]

logger = logging.getLogger(__name__)

DATASETS_FILE = "datasets.toml"
#: Segment Algorithm Type values (PS3.3 C.8.20.2.3).
ANNOTATION_TYPES = ("MANUAL", "SEMIAUTOMATIC", "AUTOMATIC")
_KEYS = {
    "version",
    "annotation_type",
    "annotator",
    "algorithm",
    "algorithm_version",
    "licence",
    "citation",
    "description",
    "label_table",
}


@dataclass(frozen=True)
class AnnotatedDataset:
    """A source dataset of annotations: its metadata and label table.

    Attributes
    ----------
    name
        The dataset name (manifest ``dataset`` column).
    version
        Dataset (annotation) version; part of the derived UIDs.
    annotation_type
        ``MANUAL``, ``SEMIAUTOMATIC`` or ``AUTOMATIC`` (Segment Algorithm Type).
    labels
        Label value -> catalog structure: everything the dataset annotated.
    annotator, algorithm, algorithm_version, licence, citation, description
        As given in ``datasets.toml`` (empty where absent).
    source_names
        Label value -> the dataset's own name of the label (may be empty).
    """

    name: str
    version: str
    annotation_type: str
    labels: Mapping[int, Structure]
    annotator: str = ""
    algorithm: str = ""
    algorithm_version: str = ""
    licence: str = ""
    citation: str = ""
    description: str = ""
    source_names: Mapping[int, str] = field(default_factory=dict)

    @property
    def structures(self) -> tuple[Structure, ...]:
        """The annotated structures, in label order."""
        return tuple(self.labels[v] for v in sorted(self.labels))

    def provenance(self, timestamp: datetime) -> Provenance:
        """The provenance of this dataset's SEGs and SRs.

        ``model`` is the dataset name and ``model_version`` its version, so that derived UIDs
        differ between datasets and versions; the algorithm name is the algorithm (or, for
        manual annotations, the annotator or the dataset); the annotator is the
        ContentCreatorName.
        """
        return Provenance(
            model=self.name,
            model_version=self.version,
            timestamp=timestamp,
            weights_licence=self.licence,
            algorithm_name=(self.algorithm or self.annotator or self.name)[:64],
            algorithm_type=self.annotation_type,
            content_creator_name=self.annotator or "omas-idc^",
        )


class DatasetRegistry:
    """The datasets of a label-tables folder; a broken dataset is kept as its error.

    ``get(name)`` returns the dataset or raises the :class:`ReleaseError` that describes why
    it cannot be used, so that each of its cases is refused with that reason.
    """

    def __init__(
        self, datasets: Mapping[str, AnnotatedDataset], errors: Mapping[str, ReleaseError]
    ) -> None:
        self._datasets = dict(datasets)
        self._errors = dict(errors)

    @property
    def names(self) -> tuple[str, ...]:
        """All dataset names described, usable or not."""
        return tuple(sorted({*self._datasets, *self._errors}))

    @property
    def datasets(self) -> dict[str, AnnotatedDataset]:
        """The usable datasets, by name."""
        return dict(self._datasets)

    def get(self, name: str, case_id: str | None = None) -> AnnotatedDataset:
        """The dataset ``name``.

        Raises
        ------
        ReleaseError
            ``unknown-dataset`` where it is not described, or the dataset's own error
            (``unknown-structure``, ``bad-label-table``).
        """
        if name in self._datasets:
            return self._datasets[name]
        if name in self._errors:
            error = self._errors[name]
            raise ReleaseError(error.message, case_id=case_id, reason=error.reason)
        raise ReleaseError(
            f"dataset {name!r} is not described in {DATASETS_FILE}; described: "
            f"{', '.join(self.names) or 'none'}. Add a [datasets.{name}] section and its "
            "label table.",
            case_id=case_id,
            reason="unknown-dataset",
        )


def _label_table(
    path: Path, dataset: str, catalog: Catalog
) -> tuple[dict[int, Structure], dict[int, str]]:
    if not path.is_file():
        raise ReleaseError(
            f"dataset {dataset}: label table {path} does not exist", reason="bad-label-table"
        )
    labels: dict[int, Structure] = {}
    names: dict[int, str] = {}
    with path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        columns = [c.strip() for c in reader.fieldnames or []]
        if "label" not in columns or "structure" not in columns:
            raise ReleaseError(
                f"dataset {dataset}: label table {path} needs the columns label,structure "
                f"(found {columns})",
                reason="bad-label-table",
            )
        for line, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"dataset {dataset}: {path.name} line {line}"
            try:
                value = int(row["label"])
            except ValueError:
                value = 0
            if value <= 0 or value > 65535:
                raise ReleaseError(
                    f"{where}: label {row['label']!r} is not an integer in 1..65535 "
                    "(0 is background)",
                    reason="bad-label-table",
                )
            try:
                structure = catalog.by_name(row["structure"])
            except CatalogError as err:
                raise ReleaseError(
                    f"{where}: {err.message} Name the catalog structure (omas-idc catalog "
                    "lists them), or add it to dicom_templates/structures.csv.",
                    reason="unknown-structure",
                ) from err
            if value in labels:
                raise ReleaseError(f"{where}: label {value} is repeated", reason="bad-label-table")
            if structure in labels.values():
                raise ReleaseError(
                    f"{where}: structure {structure.name} is given to two labels; merge them "
                    "into one label before releasing",
                    reason="bad-label-table",
                )
            labels[value] = structure
            names[value] = row.get("source_name", "")
    if not labels:
        raise ReleaseError(
            f"dataset {dataset}: label table {path} is empty", reason="bad-label-table"
        )
    return labels, names


def _dataset(
    name: str, entry: Mapping[str, Any], folder: Path, catalog: Catalog
) -> AnnotatedDataset:
    where = f"{folder / DATASETS_FILE} [datasets.{name}]"
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        raise ConfigurationError(f"{where}: unknown keys {unknown}; the keys are {sorted(_KEYS)}")
    if not SAFE_NAME.match(name):
        raise ConfigurationError(
            f"{where}: dataset names must be 1-64 letters, digits, '.', '_' or '-'"
        )
    if name in catalog.models():
        raise ConfigurationError(
            f"{where}: {name!r} is the name of a model whose labels the catalog maps by number; "
            "give the dataset another name (e.g. with an '-annotations' suffix)"
        )
    values = {k: str(v).strip() for k, v in entry.items()}
    annotation_type = values.get("annotation_type", "").upper()
    if annotation_type not in ANNOTATION_TYPES:
        raise ConfigurationError(
            f"{where}: annotation_type must be one of {', '.join(ANNOTATION_TYPES)} "
            f"(PS3.3 C.8.20.2.3), got {values.get('annotation_type')!r}"
        )
    if annotation_type != "MANUAL" and not values.get("algorithm"):
        raise ConfigurationError(
            f"{where}: {annotation_type} annotations name their algorithm (algorithm = ...): "
            "it is written to the segments' Algorithm Identification"
        )
    labels, names = _label_table(folder / values.get("label_table", f"{name}.csv"), name, catalog)
    return AnnotatedDataset(
        name=name,
        version=values.get("version", ""),
        annotation_type=annotation_type,
        labels=labels,
        annotator=values.get("annotator", ""),
        algorithm=values.get("algorithm", ""),
        algorithm_version=values.get("algorithm_version", ""),
        licence=values.get("licence", ""),
        citation=values.get("citation", ""),
        description=values.get("description", ""),
        source_names=names,
    )


def load_label_tables(folder: str | Path, catalog: Catalog) -> DatasetRegistry:
    """The datasets described in ``folder/datasets.toml`` with their label tables.

    Parameters
    ----------
    folder
        Holds ``datasets.toml`` and the label-table CSVs (see the module docstring).
    catalog
        Checks every structure name.

    Returns
    -------
    DatasetRegistry
        Usable datasets, and for broken label tables the error each of their cases gets.

    Raises
    ------
    ConfigurationError
        Where ``datasets.toml`` is missing or malformed, or a dataset's metadata is invalid
        (these concern the whole release, not one case).
    """
    root = Path(folder)
    path = root / DATASETS_FILE
    if not path.is_file():
        raise ConfigurationError(
            f"{path} does not exist: the label-tables folder describes each dataset there"
        )
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigurationError(f"{path} is not valid TOML: {err}") from err
    sections = data.get("datasets")
    if not isinstance(sections, dict) or not sections:
        raise ConfigurationError(f"{path} has no [datasets.<name>] section")
    datasets: dict[str, AnnotatedDataset] = {}
    errors: dict[str, ReleaseError] = {}
    for name, entry in sections.items():
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{path}: datasets.{name} must be a table")
        try:
            datasets[name] = _dataset(name, entry, root, catalog)
        except ReleaseError as err:
            logger.warning("%s", err)
            errors[name] = err
    return DatasetRegistry(datasets, errors)
