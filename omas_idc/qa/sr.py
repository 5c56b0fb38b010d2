"""QA results -> one TID 1500 Measurement Report (Comprehensive 3D SR) per source series.

Structure (PS3.16 TID 1500 "Measurement Report"):

- Observer context (TID 1002): the algorithm as a device (DCM 121007), with a Device Observer
  UID derived from the model, its version and weights variant; VerificationFlag UNVERIFIED.
- Procedure reported: LN 25045-6 "CT unspecified body region".
- One TID 1411 "Volumetric ROI Measurements" group per present segment that a SEG holds:
  tracking identifier (the structure name and a deterministic UID), Referenced Segment (the
  SEG instance and segment number) with the source series, Finding = the segment's property
  type, Finding Category = its category, Finding Site with Laterality (CID 244) for lateral
  structures, and Algorithm Identification (TID 4019). Measurements (TID 1419):

  - Volume (SCT 118565006, UCUM ``ml``), Measurement Method DCM 126030 "Sum of segmented
    voxel volumes";
  - Attenuation Coefficient (DCM 112031, UCUM ``[hnsf'U]``) with Derivation (CID 7464) mean
    SCT 373098007, standard deviation 386136009, minimum 255605001, maximum 56851009,
    median 373099004, and the 10th and 90th percentiles with the IBSI codes that IDC's
    radiomics map uses (QG58, 8DWT; ``cloudsegmentator_radiomicsFeaturesMaps.csv``).

  Qualitative evaluations carry each QA check and the segment verdict, named by the concepts
  of the QA rule registry (:data:`omas_idc.qa.rules.QA_RULES`).
- A TID 1500 "Qualitative Evaluations" container (UMLS C0034375) with the series verdict.

The QA concepts have no DICOM or SNOMED CT equivalent, so they belong to the private coding
scheme ``99OMAS`` (PS3.16 section 8.2: private schemes start with ``99``), declared with the
IBSI scheme in the CodingSchemeIdentificationSequence (PS3.3 C.12.1). Values that exist in
DICOM (Yes/No of CID 230) are not used for verdicts since pass/warn/fail is three-valued.

The report is assembled by :func:`omas_idc.encode.report.build_report`. UIDs and dates follow
from :class:`~omas_idc.encode.provenance.Provenance` (task ``"sr"``):
writing the same QA twice gives byte-identical files.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.sr.codedict import codes

from omas_idc.catalog.model import Catalog
from omas_idc.encode.provenance import Provenance, derived_uid
from omas_idc.encode.report import (
    IBSI_SCHEME,
    QUALITATIVE_EVALUATIONS,
    build_report,
    finding_sites,
)
from omas_idc.encode.segments import coded
from omas_idc.encode.segread import segment_references
from omas_idc.errors import EncodingError
from omas_idc.qa.records import QARecord, SeriesQA, Status
from omas_idc.qa.rules import QA_RULES
from omas_idc.volume import CTVolume

__all__ = ["SR_SERIES_POSITION", "encode_sr"]

logger = logging.getLogger(__name__)

#: Series number position of the SR (see :func:`omas_idc.encode.seg.series_number_for`).
SR_SERIES_POSITION = 99

_ML = hd.sr.CodedConcept("ml", "UCUM", "milliliter")
_HU = hd.sr.CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit")
_P10 = hd.sr.CodedConcept("QG58", IBSI_SCHEME, "10th percentile")
_P90 = hd.sr.CodedConcept("8DWT", IBSI_SCHEME, "90th percentile")


def _measurements(record: QARecord) -> list[hd.sr.Measurement]:
    metrics = record.metrics
    assert metrics is not None
    attenuation = codes.DCM.AttenuationCoefficient
    hu = metrics.hu
    derived = [
        (codes.SCT.Mean, hu.mean),
        (codes.SCT.StandardDeviation, hu.std),
        (codes.SCT.Minimum, hu.minimum),
        (codes.SCT.Maximum, hu.maximum),
        (codes.SCT.Median, hu.median),
        (_P10, hu.p10),
        (_P90, hu.p90),
    ]
    return [
        hd.sr.Measurement(
            name=codes.SCT.Volume,
            value=float(metrics.volume_ml),
            unit=_ML,
            method=codes.DCM.SumOfSegmentedVoxelMethodForVolume,
        ),
        *(
            hd.sr.Measurement(name=attenuation, value=float(value), unit=_HU, derivation=code)
            for code, value in derived
        ),
    ]


def _evaluations(record: QARecord) -> list[hd.sr.QualitativeEvaluation]:
    items = [
        hd.sr.QualitativeEvaluation(
            coded(QA_RULES.concept(f.check)), coded(QA_RULES.verdict_code(f.verdict))
        )
        for f in record.findings
    ]
    items.append(
        hd.sr.QualitativeEvaluation(
            coded(QA_RULES.segment_verdict), coded(QA_RULES.verdict_code(record.verdict))
        )
    )
    return items


def _group(
    record: QARecord,
    seg: Dataset,
    number: int,
    provenance: Provenance,
    algorithm: hd.sr.AlgorithmIdentification,
) -> hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations:
    structure = record.structure
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=provenance.uid(record.series_instance_uid, f"sr-{structure.name}", "tracking"),
            identifier=structure.name[:64],
        ),
        referenced_segment=hd.sr.ReferencedSegment(
            sop_class_uid=str(seg.SOPClassUID),
            sop_instance_uid=str(seg.SOPInstanceUID),
            segment_number=number,
            source_series=hd.sr.SourceSeriesForSegmentation(record.series_instance_uid),
        ),
        finding_type=coded(structure.type),
        finding_category=coded(structure.category),
        finding_sites=finding_sites(structure),
        algorithm_id=algorithm,
        measurements=_measurements(record),
        qualitative_evaluations=_evaluations(record),
    )


def _series_evaluations(qa: SeriesQA) -> hd.sr.ContainerContentItem:
    container = hd.sr.ContainerContentItem(
        name=QUALITATIVE_EVALUATIONS, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = DicomSequence(
        [
            hd.sr.CodeContentItem(
                name=coded(QA_RULES.series_verdict),
                value=coded(QA_RULES.verdict_code(qa.verdict)),
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        ]
    )
    return container


def encode_sr(
    volume: CTVolume,
    qa: SeriesQA,
    segs: Sequence[Dataset],
    catalog: Catalog,
    provenance: Provenance,
    *,
    references: Mapping[str, tuple[Dataset, int]] | None = None,
) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 Measurement Report of one series' QA (see the module docstring).

    Parameters
    ----------
    volume
        The source series (its SeriesInstanceUID and SeriesNumber).
    qa
        The series' QA, from :func:`omas_idc.qa.assess_series`.
    segs
        The SEG datasets holding the segments (all task SEGs of the series, or one binary
        SEG); they are the SR's evidence and give patient and study.
    catalog
        Matches the SEGs' segments to structures by their codes.
    provenance
        Algorithm, version and timestamp: UIDs and dates follow from it.
    references
        Structure name -> (SEG, segment number) as the encoder made them
        (:func:`omas_idc.run.finish.segment_table`); without it the SEGs' segments are matched
        to the catalog by their codes.

    Raises
    ------
    EncodingError
        If no SEG is given, a present structure is in none of the SEGs, or highdicom refuses.
    """
    series_uid = volume.series_instance_uid
    if not segs:
        raise EncodingError(
            "a measurement report references SEG segments: pass the series' SEGs",
            series_instance_uid=series_uid or None,
            reason="no-seg",
        )
    if references is None:
        references = segment_references(segs, catalog, series_uid)
    algorithm = hd.sr.AlgorithmIdentification(
        name=provenance.name[:64],
        version=provenance.model_version[:64] or "unknown",
        family=codes.cid7162.ArtificialIntelligence,
    )
    groups = []
    for record in qa.records:
        if record.status is not Status.PRESENT:
            continue
        if record.name not in references:
            raise EncodingError(
                f"{record.name} is present in the label maps but in none of the SEGs given: "
                "pass the SEGs encoded from the same label maps",
                series_instance_uid=series_uid or None,
                reason="segment-not-encoded",
            )
        seg, number = references[record.name]
        groups.append(_group(record, seg, number, provenance, algorithm))
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid(
            "device",
            provenance.model,
            provenance.model_version,
            provenance.weights_variant,
            provenance.omas_idc_version,
        ),
        name=provenance.name[:64],
        manufacturer_name=provenance.manufacturer[:64],
        model_name=f"omas-idc {provenance.model}"[:64],
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )
    try:
        report = hd.sr.MeasurementReport(
            observation_context=context,
            procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
            imaging_measurements=groups,
        )
    except (ValueError, TypeError, AttributeError) as err:
        raise EncodingError(
            f"highdicom refused the measurement groups: {err}",
            series_instance_uid=series_uid or None,
            reason="highdicom",
        ) from err
    report[0].ContentSequence.append(_series_evaluations(qa))
    sr = build_report(
        volume,
        segs,
        report,
        provenance,
        kind="sr",
        series_position=SR_SERIES_POSITION,
        description=f"{provenance.model.upper()} QA measurements",
    )
    logger.info("series %s: SR with %d measurement groups", series_uid, len(groups))
    return sr
