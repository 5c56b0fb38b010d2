"""Building blocks shared by omas-idc's TID 1500 Measurement Reports (Comprehensive 3D SR).

The QA report (:mod:`omas_idc.qa.sr`) and the annotation status report
(:mod:`omas_idc.encode.annotation_sr`) are built the same way: a highdicom
``MeasurementReport`` wrapped by :func:`build_report` into a deterministic Comprehensive 3D SR
whose private coding schemes are declared in the CodingSchemeIdentificationSequence
(PS3.3 C.12.1).

Concepts that have no DICOM or SNOMED CT equivalent belong to the private coding scheme
``99OMAS`` (:mod:`omas_idc.coding`).
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom.dataset import Dataset

from omas_idc.catalog.model import Structure
from omas_idc.coding import IBSI_SCHEME, OMAS_SCHEME, OMAS_SCHEME_NAME, OMAS_SCHEME_ORGANIZATION
from omas_idc.encode.provenance import Provenance
from omas_idc.encode.seg import series_number_for
from omas_idc.encode.segments import coded
from omas_idc.errors import EncodingError
from omas_idc.volume import CTVolume

__all__ = [
    "IBSI_SCHEME",
    "OMAS_SCHEME",
    "OMAS_SCHEME_NAME",
    "OMAS_SCHEME_ORGANIZATION",
    "QUALITATIVE_EVALUATIONS",
    "build_report",
    "finding_sites",
    "scheme_item",
]

#: The TID 1500 container of qualitative evaluations about the whole report (row 12).
QUALITATIVE_EVALUATIONS = hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")


def scheme_item(designator: str, name: str, organization: str) -> Dataset:
    """One item of the CodingSchemeIdentificationSequence (PS3.3 C.12.1.1.5)."""
    item = Dataset()
    item.CodingSchemeDesignator = designator
    item.CodingSchemeName = name
    item.CodingSchemeResponsibleOrganization = organization
    return item


def finding_sites(structure: Structure) -> list[hd.sr.FindingSite] | None:
    """Finding Site with Laterality (CID 244) for lateral structures, else ``None``."""
    if structure.region is not None and structure.region_modifier is not None:
        return [
            hd.sr.FindingSite(coded(structure.region), laterality=coded(structure.region_modifier))
        ]
    if structure.type_modifier is not None:
        return [hd.sr.FindingSite(coded(structure.type), laterality=coded(structure.type_modifier))]
    return None


def _default_schemes() -> list[Dataset]:
    return [
        scheme_item(OMAS_SCHEME, OMAS_SCHEME_NAME, OMAS_SCHEME_ORGANIZATION),
        scheme_item(
            IBSI_SCHEME,
            "Image Biomarker Standardisation Initiative",
            "IBSI (https://theibsi.github.io)",
        ),
    ]


def build_report(
    volume: CTVolume,
    evidence: Sequence[Dataset],
    report: hd.sr.MeasurementReport,
    provenance: Provenance,
    *,
    kind: str,
    series_position: int,
    description: str,
    schemes: Sequence[Dataset] | None = None,
) -> hd.sr.Comprehensive3DSR:
    """The Comprehensive 3D SR around ``report``, deterministic and with its schemes declared.

    Everything highdicom takes from the clock is replaced by ``provenance``'s timestamp; the
    UIDs derive from the source series, ``kind`` (``"sr"``, ``"annotation-sr"``) and
    ``provenance``; the SeriesNumber follows :func:`series_number_for` at ``series_position``.
    ``schemes`` are the CodingSchemeIdentificationSequence items (PS3.3 C.12.1); by default
    the private ``99OMAS`` scheme and IBSI, as the QA report uses them.

    Raises
    ------
    EncodingError
        If highdicom refuses the report.
    """
    series_uid = volume.series_instance_uid
    try:
        sr = hd.sr.Comprehensive3DSR(
            evidence=list(evidence),
            content=report,
            series_instance_uid=provenance.uid(series_uid, kind, "series"),
            series_number=series_number_for(volume.header.series_number, series_position),
            sop_instance_uid=provenance.uid(series_uid, kind, "instance"),
            instance_number=1,
            manufacturer=provenance.manufacturer,
            is_complete=True,
            is_final=False,
            is_verified=False,
        )
    except (ValueError, TypeError, AttributeError) as err:
        raise EncodingError(
            f"highdicom refused to build the {description} report: {err}",
            series_instance_uid=series_uid or None,
            reason="highdicom",
        ) from err
    for keyword in ("ContentDate", "SeriesDate", "InstanceCreationDate"):
        if keyword in sr:
            setattr(sr, keyword, provenance.date)
    for keyword in ("ContentTime", "SeriesTime", "InstanceCreationTime"):
        if keyword in sr:
            setattr(sr, keyword, provenance.time)
    for item in sr.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = provenance.date + provenance.time
    sr.SeriesDescription = description[:64]
    sr.CodingSchemeIdentificationSequence = list(
        schemes if schemes is not None else _default_schemes()
    )
    return sr
