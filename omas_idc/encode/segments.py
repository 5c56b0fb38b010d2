"""Catalog structures -> highdicom segment descriptions (PS3.3 C.8.20.2, Segment Sequence).

Each segment carries the catalog's category, type, laterality modifier (as a
SegmentedPropertyTypeModifierCodeSequence, never as label text), anatomic region and its
modifier, the recommended display colour, and the algorithm identification: name, version,
family "Artificial Intelligence", and the weights variant and licence (and the structure
selection, where the run was restricted to one) as parameters.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.sr.codedict import codes

from omas_idc.catalog.model import Code, Structure
from omas_idc.encode.provenance import Provenance

__all__ = ["algorithm_identification", "coded", "segment_description"]

_LABEL_LENGTH = 64  # SegmentLabel is LO (PS3.5 6.2)


def coded(code: Code) -> hd.sr.CodedConcept:
    """A catalog code as a highdicom coded concept."""
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def algorithm_identification(provenance: Provenance) -> hd.AlgorithmIdentificationSequence:
    """Algorithm Identification Sequence: name, version, family AI, weights variant/licence.

    A run restricted to some structures (``--structures``) says so in the parameter
    ``structures`` (the names separated by spaces: highdicom joins parameters with commas).
    """
    parameters = {
        key: value
        for key, value in (
            ("weights_variant", provenance.weights_variant),
            ("weights_licence", provenance.weights_licence),
            ("structures", " ".join(provenance.structures)),
            ("producer", f"omas-idc {provenance.omas_idc_version}"),
        )
        if value
    }
    return hd.AlgorithmIdentificationSequence(
        name=provenance.name[:64],
        family=codes.cid7162.ArtificialIntelligence,
        version=provenance.model_version[:64] or "unknown",
        parameters=parameters,
    )


def _label(structure: Structure) -> str:
    return structure.name.replace("_", " ")[:_LABEL_LENGTH]


def segment_description(
    number: int,
    structure: Structure,
    provenance: Provenance,
    algorithm: hd.AlgorithmIdentificationSequence | None = None,
) -> hd.seg.SegmentDescription:
    """The description of segment ``number`` for a catalog structure."""
    automatic = provenance.algorithm_type.upper() != "MANUAL"
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=_label(structure),
        segmented_property_category=coded(structure.category),
        segmented_property_type=coded(structure.type),
        algorithm_type=provenance.algorithm_type,
        algorithm_identification=(algorithm or algorithm_identification(provenance))
        if automatic
        else None,
        anatomic_regions=[coded(structure.region)] if structure.region else None,
        display_color=hd.color.CIELabColor.from_rgb(*structure.color_rgb),
    )
    if structure.type_modifier is not None:
        type_item = description.SegmentedPropertyTypeCodeSequence[0]
        type_item.SegmentedPropertyTypeModifierCodeSequence = [coded(structure.type_modifier)]
    if structure.region is not None and structure.region_modifier is not None:
        region_item = description.AnatomicRegionSequence[0]
        region_item.AnatomicRegionModifierSequence = [coded(structure.region_modifier)]
    return description
