"""Annotation status of every structure -> one TID 1500 Measurement Report per case.

A partially annotated release must let its users tell *absent* from *not annotated*. The SEG
holds only the segments an annotator drew; this report records, for every structure of the
release's structure universe, one of three statuses (:class:`AnnotationStatus`), as a
qualitative evaluation named (AN0001, 99OMAS, "Annotation status") whose value is

- (AN0100, 99OMAS, "Annotated and present"): the dataset annotated it and the case holds it;
- (AN0101, 99OMAS, "Annotated but absent"): the dataset annotated it, the case has none of it
  (the structure is not in the field of view, or was removed);
- (AN0102, 99OMAS, "Not annotated"): the dataset did not annotate it, or it lies outside the
  region a cropped label map covers; nothing is known.

Structure (PS3.16 TID 1500 "Measurement Report"):

- Observer context (TID 1002): the annotator as a person (where the dataset names one) and
  omas-idc, which wrote the report, as a device; VerificationFlag UNVERIFIED.
- Procedure reported: LN 25045-6 "CT unspecified body region".
- Every structure of the universe: one CODE item in the TID 1500 "Qualitative Evaluations"
  container (row 12, UMLS C0034375) whose concept name is the structure's Segmented Property
  Type and whose value is its status, with HAS CONCEPT MOD children for its laterality
  (SCT 272741003 "Laterality", the type modifier) and, for structures coded by location, its
  Finding Site (with laterality). Laterality is never carried by text.
- Each present structure also gets a TID 1411 "Volumetric ROI Measurements" group in
  "Imaging Measurements" that references its segment in the SEG (Referenced Segment, source
  series), with tracking identifier (the structure name), Finding, Finding Category, Finding
  Site with Laterality (CID 244) for lateral structures, Algorithm Identification (TID 4019)
  unless the annotation is MANUAL, its Volume (SCT 118565006, ``ml``, DCM 126030 "Sum of
  segmented voxel volumes") and the status. Absent and not annotated structures have no
  segment to reference and no group (PixelMed checks every measurement group against
  TID 1411, which requires a reference); where nothing is present the report holds only the
  Qualitative Evaluations container, which TID 1500 allows, and its evidence is the source
  images.

The status concepts have no DICOM or SNOMED CT equivalent, so they belong to the private
scheme ``99OMAS`` (PS3.16 section 8.2), declared in the CodingSchemeIdentificationSequence
(PS3.3 C.12.1) as the QA report (:mod:`omas_idc.qa.sr`) does. UIDs and dates follow from
the :class:`~omas_idc.encode.provenance.Provenance` (task ``"annotation-sr"``).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes

from omas_idc.catalog.model import Catalog, Code, Structure
from omas_idc.encode.provenance import Provenance, derived_uid
from omas_idc.encode.report import (
    OMAS_SCHEME,
    OMAS_SCHEME_NAME,
    OMAS_SCHEME_ORGANIZATION,
    QUALITATIVE_EVALUATIONS,
    build_report,
    finding_sites,
    scheme_item,
)
from omas_idc.encode.segments import coded
from omas_idc.encode.segread import segment_references
from omas_idc.encode.sources import load_source_datasets
from omas_idc.errors import EncodingError
from omas_idc.volume import CTVolume

__all__ = [
    "ANNOTATION_SR_POSITION",
    "ANNOTATION_STATUS",
    "STATUS_CODES",
    "AnnotationStatus",
    "StructureStatus",
    "encode_annotation_sr",
]

logger = logging.getLogger(__name__)

#: Series number position of the annotation SR (:func:`omas_idc.encode.seg.series_number_for`).
ANNOTATION_SR_POSITION = 91


class AnnotationStatus(str, enum.Enum):
    """What a partially annotated release knows about one structure in one case."""

    PRESENT = "annotated_present"
    ABSENT = "annotated_absent"
    NOT_ANNOTATED = "not_annotated"


#: The name of the status evaluation.
ANNOTATION_STATUS = Code("AN0001", OMAS_SCHEME, "Annotation status")
#: Status -> its value concept.
STATUS_CODES: dict[AnnotationStatus, Code] = {
    AnnotationStatus.PRESENT: Code("AN0100", OMAS_SCHEME, "Annotated and present"),
    AnnotationStatus.ABSENT: Code("AN0101", OMAS_SCHEME, "Annotated but absent"),
    AnnotationStatus.NOT_ANNOTATED: Code("AN0102", OMAS_SCHEME, "Not annotated"),
}
_ML = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
#: (126010, DCM, "Imaging Measurements"), the TID 1500 container of measurement groups.
_IMAGING_MEASUREMENTS = "126010"


@dataclass(frozen=True)
class StructureStatus:
    """The annotation status of one structure in one case.

    Attributes
    ----------
    structure
        The catalog structure.
    status
        Present, absent, or not annotated.
    label
        Its value in the source label map (``None`` where not annotated).
    voxel_count
        Labelled voxels on the DICOM grid (0 unless present).
    volume_ml
        Their volume in millilitres (``None`` unless present).
    """

    structure: Structure
    status: AnnotationStatus
    label: int | None = None
    voxel_count: int = 0
    volume_ml: float | None = None


def _evaluation(status: AnnotationStatus) -> hd.sr.QualitativeEvaluation:
    return hd.sr.QualitativeEvaluation(coded(ANNOTATION_STATUS), coded(STATUS_CODES[status]))


def _tracking(provenance: Provenance, series_uid: str, name: str) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(
        uid=provenance.uid(series_uid, f"annotation-sr-{name}", "tracking"),
        identifier=name[:64],
    )


def _present_group(
    item: StructureStatus,
    reference: tuple[Dataset, int],
    series_uid: str,
    provenance: Provenance,
    algorithm: hd.sr.AlgorithmIdentification | None,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    structure = item.structure
    seg, number = reference
    measurements = (
        [
            hd.sr.Measurement(
                name=codes.SCT.Volume,
                value=float(item.volume_ml),
                unit=_ML,
                method=codes.DCM.SumOfSegmentedVoxelMethodForVolume,
            )
        ]
        if item.volume_ml is not None
        else None
    )
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(provenance, series_uid, structure.name),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=str(seg.SOPClassUID),
            sop_instance_uid=str(seg.SOPInstanceUID),
            segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(series_uid),
        ),
        finding_type=coded(structure.type),
        finding_category=coded(structure.category),
        finding_sites=finding_sites(structure),
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[_evaluation(item.status)],
    )


def _status_item(item: StructureStatus) -> hd.sr.CodeContentItem:
    """``<structure type>: <status>``, its laterality and region as concept modifiers."""
    structure = item.structure
    code = hd.sr.CodeContentItem(
        name=coded(structure.type),
        value=coded(STATUS_CODES[item.status]),
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
    )
    modifiers: list[Dataset] = []
    if structure.type_modifier is not None:
        modifiers.append(
            hd.sr.CodeContentItem(
                name=codes.SCT.Laterality,
                value=coded(structure.type_modifier),
                relationship_type=hd.sr.RelationshipTypeValues.HAS_CONCEPT_MOD,
            )
        )
    if structure.region is not None:
        modifiers.append(
            hd.sr.FindingSite(
                coded(structure.region),
                laterality=coded(structure.region_modifier) if structure.region_modifier else None,
            )
        )
    if modifiers:
        code.ContentSequence = DicomSequence(modifiers)
    return code


def _status_container(statuses: Sequence[StructureStatus]) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = DicomSequence([_status_item(item) for item in statuses])
    return container


def _placeholder_group(
    provenance: Provenance, series_uid: str
) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking(provenance, series_uid, "placeholder")
    )


def _observation_context(provenance: Provenance, annotator: str) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid("device", "release-labels", provenance.omas_idc_version),
        name="omas-idc release-labels",
        manufacturer_name=provenance.manufacturer[:64],
        model_name="omas-idc release-labels",
    )
    person = (
        hd.sr.ObserverContext(
            observer_type=codes.DCM.Person,
            observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                name=annotator[:64]
            ),
        )
        if annotator
        else None
    )
    return hd.sr.ObservationContext(
        observer_person_context=person,
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        ),
    )


def encode_annotation_sr(
    volume: CTVolume,
    statuses: Sequence[StructureStatus],
    segs: Sequence[Dataset],
    catalog: Catalog,
    provenance: Provenance,
    *,
    annotator: str = "",
    algorithm_version: str = "",
) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 report of one case's annotation status (see the module docstring).

    Parameters
    ----------
    volume
        The source series (its SeriesInstanceUID and SeriesNumber; its images are the
        evidence where no structure is present and there is no SEG).
    statuses
        One entry per structure of the release's universe, in report order.
    segs
        The case's SEG(s) holding the present structures (empty where none is present).
    catalog
        Matches the SEGs' segments to structures by their codes.
    provenance
        The dataset's provenance: UIDs and dates follow from it; the algorithm is identified
        in the present groups unless ``provenance.algorithm_type`` is ``MANUAL``.
    annotator
        The person observer (PN), where the dataset names one.
    algorithm_version
        The annotation algorithm's version (TID 4019); defaults to
        ``provenance.model_version``.

    Raises
    ------
    EncodingError
        If a present structure is in none of the SEGs, a structure is listed twice, or
        highdicom refuses.
    """
    series_uid = volume.series_instance_uid
    names = [s.structure.name for s in statuses]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise EncodingError(
            f"structures {repeated} are listed twice in the annotation status",
            series_instance_uid=series_uid or None,
            reason="duplicate-structure",
        )
    references = segment_references(segs, catalog, series_uid)
    algorithm = (
        None
        if provenance.algorithm_type.upper() == "MANUAL"
        else hd.sr.AlgorithmIdentification(
            name=provenance.name[:64],
            version=(algorithm_version or provenance.model_version)[:64] or "unknown",
            family=codes.cid7162.ArtificialIntelligence,
        )
    )
    groups = []
    for item in statuses:
        if item.status is not AnnotationStatus.PRESENT:
            continue
        if item.structure.name not in references:
            raise EncodingError(
                f"{item.structure.name} is annotated and present but in none of the SEGs "
                "given: pass the SEG encoded from the same label map",
                series_instance_uid=series_uid or None,
                reason="segment-not-encoded",
            )
        groups.append(
            _present_group(item, references[item.structure.name], series_uid, provenance, algorithm)
        )
    evidence = list(segs) if segs else load_source_datasets(volume)
    try:
        report = hd.sr.MeasurementReport(
            observation_context=_observation_context(provenance, annotator),
            procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
            imaging_measurements=groups or [_placeholder_group(provenance, series_uid)],
        )
        if not groups:
            # TID 1500 needs Imaging Measurements (row 6) or Qualitative Evaluations (row 12);
            # highdicom insists on the former, which has nothing to hold here.
            report[0].ContentSequence = DicomSequence(
                [
                    item
                    for item in report[0].ContentSequence
                    if item.ConceptNameCodeSequence[0].CodeValue != _IMAGING_MEASUREMENTS
                ]
            )
        report[0].ContentSequence.append(_status_container(statuses))
    except (ValueError, TypeError, AttributeError) as err:
        raise EncodingError(
            f"highdicom refused the annotation groups: {err}",
            series_instance_uid=series_uid or None,
            reason="highdicom",
        ) from err
    sr = build_report(
        volume,
        evidence,
        report,
        provenance,
        kind="annotation-sr",
        series_position=ANNOTATION_SR_POSITION,
        description=f"{provenance.model} annotation status",
        schemes=[scheme_item(OMAS_SCHEME, OMAS_SCHEME_NAME, OMAS_SCHEME_ORGANIZATION)],
    )
    logger.info(
        "series %s: annotation SR with %d structures (%d present)",
        series_uid,
        len(statuses),
        sum(1 for s in statuses if s.status is AnnotationStatus.PRESENT),
    )
    return sr
