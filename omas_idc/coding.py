"""omas-idc's private coding scheme, for concepts that DICOM and SNOMED CT do not have.

Private schemes start with ``99`` (PS3.16 section 8.2). The QA concepts
(:mod:`omas_idc.qa.rules`) and the annotation status concepts
(:mod:`omas_idc.encode.annotation_sr`) belong to ``99OMAS``; every SR that uses them declares
it in its CodingSchemeIdentificationSequence (PS3.3 C.12.1, :mod:`omas_idc.encode.report`).
"""

from __future__ import annotations

__all__ = ["IBSI_SCHEME", "OMAS_SCHEME", "OMAS_SCHEME_NAME", "OMAS_SCHEME_ORGANIZATION"]

#: Private coding scheme of the QA and annotation concepts.
OMAS_SCHEME = "99OMAS"
#: CodingSchemeName and CodingSchemeResponsibleOrganization declared for ``99OMAS``.
OMAS_SCHEME_NAME = "omas-idc quality control and annotation concepts"
OMAS_SCHEME_ORGANIZATION = "omas-idc developers (https://github.com/omas-idc)"
#: Image Biomarker Standardisation Initiative, the percentiles' scheme in IDC's radiomics map.
IBSI_SCHEME = "IBSI"
