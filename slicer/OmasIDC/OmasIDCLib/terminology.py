"""The catalog's DICOM coding of a structure in 3D Slicer's terminology formats.

Slicer keeps a segment's coding in its ``TerminologyEntry`` tag: seven parts separated by
``~`` (terminology context name, category, type, type modifier, anatomic context name,
anatomic region, anatomic region modifier), each code a ``scheme^value^meaning`` triplet, an
absent code ``^^`` (Slicer's developer guide, "Segmentations: TerminologyEntry tag"). The
segment's codes are the catalog's (PS3.3 C.8.20.2 Segment Description, the same codes the
omas-idc SEG carries), so Slicer's terminology selector shows the SNOMED CT concepts.

:func:`terminology_context` builds a segmentation context (dcmqi's segment-context schema, the
``.term.json`` files Slicer's Terminologies module loads) holding every catalog structure, with
its colour, so that the selector lists them all under :data:`CONTEXT_NAME`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

__all__ = [
    "ANATOMIC_CONTEXT_NAME",
    "CONTEXT_NAME",
    "SCHEMA",
    "parse_terminology_entry",
    "terminology_context",
    "terminology_entry",
]

#: The segmentation context the module loads into Slicer (built from the catalog).
CONTEXT_NAME = "Segmentation category and type - omas-idc catalog"
#: Slicer's own anatomic context (regions of findings coded by location, e.g. kidney cysts).
ANATOMIC_CONTEXT_NAME = "Anatomic codes - DICOM master list"
#: dcmqi's JSON schema of segmentation contexts.
SCHEMA = "https://raw.githubusercontent.com/qiicr/dcmqi/master/doc/segment-context-schema.json#"


class CodeLike(Protocol):
    """A coded concept (:class:`omas_idc.catalog.Code`)."""

    value: str
    scheme: str
    meaning: str


class StructureLike(Protocol):
    """The coded attributes of a catalog structure (:class:`omas_idc.catalog.Structure`)."""

    name: str
    category: CodeLike
    type: CodeLike
    type_modifier: CodeLike | None
    region: CodeLike | None
    region_modifier: CodeLike | None
    color_rgb: tuple[int, int, int]


def _triplet(code: CodeLike | None) -> str:
    if code is None:
        return "^^"
    for part in (code.scheme, code.value, code.meaning):
        if "^" in part or "~" in part or "|" in part:
            raise ValueError(
                f"code {code.scheme}/{code.value} {code.meaning!r} holds a '^', '~' or '|', "
                "which Slicer's terminology entry uses as separators: fix the catalog row"
            )
    return f"{code.scheme}^{code.value}^{code.meaning}"


def terminology_entry(structure: StructureLike, context_name: str = CONTEXT_NAME) -> str:
    """The ``TerminologyEntry`` tag value of a catalog structure.

    Parameters
    ----------
    structure
        A catalog structure (category, type, type modifier, region, region modifier).
    context_name
        The segmentation context named in the entry (the one :func:`terminology_context`
        builds, loaded by the module).

    Returns
    -------
    str
        For example ``"...~SCT^91723000^Anatomical Structure~SCT^64033007^Kidney~SCT^7771000^Left
        ~Anatomic codes - DICOM master list~^^~^^"``.
    """
    return "~".join(
        (
            context_name,
            _triplet(structure.category),
            _triplet(structure.type),
            _triplet(structure.type_modifier),
            ANATOMIC_CONTEXT_NAME,
            _triplet(structure.region),
            _triplet(structure.region_modifier),
        )
    )


def parse_terminology_entry(entry: str) -> dict[str, tuple[str, str, str] | str | None]:
    """The parts of a ``TerminologyEntry`` value (the inverse of :func:`terminology_entry`).

    Returns
    -------
    dict
        ``context``, ``anatomic_context`` (names) and ``category``, ``type``,
        ``type_modifier``, ``region``, ``region_modifier`` as ``(scheme, value, meaning)``
        triplets, ``None`` where absent.

    Raises
    ------
    ValueError
        If the value does not have seven ``~``-separated parts of three ``^``-separated codes.
    """
    parts = entry.split("~")
    if len(parts) != 7:
        raise ValueError(f"a terminology entry has 7 '~'-separated parts, not {len(parts)}")
    result: dict[str, tuple[str, str, str] | str | None] = {
        "context": parts[0],
        "anatomic_context": parts[4],
    }
    for key, part in zip(
        ("category", "type", "type_modifier", "region", "region_modifier"),
        (parts[1], parts[2], parts[3], parts[5], parts[6]),
        strict=True,
    ):
        fields = part.split("^")
        if len(fields) != 3:
            raise ValueError(f"the {key} code {part!r} is not a scheme^value^meaning triplet")
        result[key] = None if fields == ["", "", ""] else (fields[0], fields[1], fields[2])
    return result


def _code(code: CodeLike) -> dict[str, Any]:
    return {
        "CodingSchemeDesignator": code.scheme,
        "CodeValue": code.value,
        "CodeMeaning": code.meaning,
    }


def terminology_context(
    structures: Iterable[StructureLike], context_name: str = CONTEXT_NAME
) -> dict[str, Any]:
    """A Slicer segmentation context (``.term.json`` data) with every structure given.

    Categories and types are listed once; a type with laterality carries its modifiers, each
    with the colour of its structure. Categories of findings coded by location
    (``showAnatomy``) let Slicer's selector offer the anatomic region.
    """
    categories: dict[tuple[str, str], dict[str, Any]] = {}
    types: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for structure in structures:
        category_key = (structure.category.scheme, structure.category.value)
        category = categories.setdefault(
            category_key,
            {**_code(structure.category), "showAnatomy": False, "Type": []},
        )
        if structure.region is not None:
            category["showAnatomy"] = True
        type_key = (*category_key, structure.type.scheme, structure.type.value)
        color = [int(c) for c in structure.color_rgb]
        entry = types.get(type_key)
        if entry is None:
            entry = {**_code(structure.type), "recommendedDisplayRGBValue": color}
            types[type_key] = entry
            category["Type"].append(entry)
        if structure.type_modifier is not None:
            modifiers = entry.setdefault("Modifier", [])
            if all(m["CodeValue"] != structure.type_modifier.value for m in modifiers):
                modifiers.append(
                    {**_code(structure.type_modifier), "recommendedDisplayRGBValue": color}
                )
    return {
        "SegmentationCategoryTypeContextName": context_name,
        "@schema": SCHEMA,
        "SegmentationCodes": {"Category": list(categories.values())},
    }
