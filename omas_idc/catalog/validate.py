"""The rules every catalog row must follow, checked against DICOM Part 16 (PS3.16).

Each rule has a short name that :class:`Issue` carries, so that a report (and a test) can say
which rule a row breaks:

``code``
    SCT codes are well-formed SNOMED CT concept ids (Verhoeff check digit), no placeholders.
``part16-meaning``
    A code that Part 16 has carries Part 16's meaning (the one of CID 7151 for a type).
``outside-part16``
    A type code outside Part 16 names the reference mapping that gives it with the same
    meaning (checked where the reference folder is given); other codes must be in Part 16.
``cid7151``
    A type code that Part 16 has is a member of CID 7151 (Segmentation Property Types), or its
    row is on :data:`OUTSIDE_CID7151` with this code and the reason CID 7151 cannot serve.
``category``
    Categories are members of CID 7150; modifiers of CID 244 (laterality).
``laterality``
    The side in the name, the laterality modifier and a sided type meaning agree; a left/right
    pair shares its type code and differs by the modifier SCT 7771000 / 24028007.
``entire``
    No "Entire ..." concept where a "Structure of ..." concept exists (PS3.16 guidance).
``duplicate``
    No two structures share their codes (type, modifier, region, region modifier).
``spelling``
    Every word of a meaning is a word Part 16 uses (or a listed anatomical term).
``labels``
    Every label row names a catalog structure; the labels of each model task are 1..N, each
    given once, with distinct label names; where the reference folder holds a class list
    ``<model>_classes.txt`` (CADS'), every label row agrees with it.
``color``
    Structures of one label map (a model task) differ in colour by CIE76 Delta E >= 10.

The rules read the structures and the model label rows (:class:`~omas_idc.catalog.LabelRow`);
the label rules are in :mod:`~omas_idc.catalog.label_rules`. No rule knows a model by name: a
model family is its label rows.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from omas_idc.catalog import part16
from omas_idc.catalog.issues import Issue, ValidationReport
from omas_idc.catalog.label_rules import check_class_lists, check_colors, check_labels
from omas_idc.catalog.model import CODE_FIELDS, Code, LabelRow, Structure
from omas_idc.choices import suggestion

__all__ = [
    "OUTSIDE_CID7151",
    "Issue",
    "ValidationReport",
    "validate_structures",
]

LEFT, RIGHT = "7771000", "24028007"
_SIDE_OF_MODIFIER = {LEFT: "left", RIGHT: "right"}

#: Misspellings found in the public mappings, with their correction.
KNOWN_MISSPELLINGS = {"minius": "minimus"}
#: Anatomical words of valid SNOMED CT meanings that no Part 16 meaning uses.
EXTRA_WORDS = frozenset({"arytenoid", "cochlea", "cricopharyngeus", "psoas", "spongy"})
#: 'Entire ...' concepts whose meanings in the public mappings hide it, and the replacement.
KNOWN_ENTIRE = {"181674001": "Entire gluteus maximus muscle: use 206007 (structure of)"}
_PLACEHOLDERS = frozenset({"", "unknown", "placeholder", "todo", "tbd", "unmapped", "n/a", "none"})
#: The reference mapping files an outside-Part-16 code may cite, and their column prefixes.
REFERENCE_FILES = {
    "cads_snomed_mapping.csv": "SegmentedPropertyTypeCodeSequence.",
    "totalsegmentator_snomed_mapping.csv": "SegmentedPropertyTypeCodeSequence.",
    "idc_segmentation_comparison_omas_with_colors.csv": "SegmentedPropertyTypeCodeSequence_",
}

#: The rows whose type code is in Part 16 but not in CID 7151, each with that code and why
#: CID 7151 (as pydicom 3.0's Part 16 has it) holds no concept for the structure. Any other
#: row with a Part 16 type outside CID 7151 breaks the ``cid7151`` rule.
OUTSIDE_CID7151: dict[str, tuple[str, str]] = {
    "spinal_canal": (
        "61853006",
        "CID 7151 has no spinal or vertebral canal ('Spinal cord' 2748008 is the cord alone); "
        "Part 16 has 61853006 in CID 6115 and 8134 only, not in CID 7153 where the CADS "
        "Slicer terminology puts it. Code from the CADS and IDC mappings.",
    ),
    "buccal_mucosa": (
        "16811007",
        "CID 7151 has only 'Cheek' 60819002, the whole cheek, not its mucosa (the organ at "
        "risk); 16811007 is Part 16's CID 7601 head and neck site. Code from the CADS and IDC "
        "mappings.",
    ),
    "oral_cavity": (
        "74262004",
        "CID 7151 has only 'Mouth' 123851003 (mouth region, lips included), wider than the "
        "oral cavity organ at risk; 74262004 is Part 16's CID 7601 head and neck site. Code "
        "from the CADS and IDC mappings.",
    ),
    "lacrimal_gland_left": (
        "13561001",
        "CID 7151 has the lacrimal artery and bone but no lacrimal gland; 13561001 is Part "
        "16's CID 4209 ophthalmic structure. Code from the CADS mapping (notes: CADS-IDC "
        "disagreement).",
    ),
    "lacrimal_gland_right": (
        "13561001",
        "CID 7151 has the lacrimal artery and bone but no lacrimal gland; 13561001 is Part "
        "16's CID 4209 ophthalmic structure. Code from the CADS mapping (notes: CADS-IDC "
        "disagreement).",
    ),
    "glottis": (
        "1307006",
        "CID 7151 has only the whole 'Larynx' 4596009 (the larynx row), no laryngeal "
        "subsite; 1307006 is Part 16's CID 7601 head and neck site. Code from the CADS and "
        "IDC mappings.",
    ),
    "supraglottis": (
        "119255006",
        "CID 7151 has only the whole 'Larynx' 4596009 (the larynx row), no laryngeal "
        "subsite; 119255006 is Part 16's CID 7601 head and neck site. Code from the CADS and "
        "IDC mappings.",
    ),
    "optic_nerve_left": (
        "18234004",
        "CID 7151 has the optic chiasm, tract, radiation and canal and the generic 'Cranial "
        "nerve' 25238003, not the optic nerve; 18234004 is Part 16's CID 7706 cranial nerve. "
        "Code from the CADS and IDC mappings.",
    ),
    "optic_nerve_right": (
        "18234004",
        "CID 7151 has the optic chiasm, tract, radiation and canal and the generic 'Cranial "
        "nerve' 25238003, not the optic nerve; 18234004 is Part 16's CID 7706 cranial nerve. "
        "Code from the CADS and IDC mappings.",
    ),
    "breast_implant": (
        "2282003",
        "CID 7151 has only the generic 'Implant' 40388003 (which would need the breast as "
        "anatomic region, as TotalSegmentator codes hip_implant); 2282003 is Part 16's "
        "CID 6059 breast implant type. Code from the CADS and IDC mappings.",
    ),
}


def _verhoeff_ok(digits: str) -> bool:
    d = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ]
    p = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ]
    check = 0
    for i, ch in enumerate(reversed(digits)):
        check = d[check][p[i % 8][int(ch)]]
    return check == 0


def _codes(s: Structure) -> Iterable[tuple[str, Code]]:
    for name in CODE_FIELDS:
        code = getattr(s, name)
        if code is not None:
            yield name, code


def _check_codes(s: Structure, issues: list[Issue]) -> None:
    for field_name, code in _codes(s):
        if code.meaning.strip().lower() in _PLACEHOLDERS or code.value.strip().lower() in (
            _PLACEHOLDERS
        ):
            issues.append(Issue(s.name, "code", f"{field_name} {code} is a placeholder"))
            continue
        if code.scheme == "SCT":
            v = code.value
            if not (
                v.isdigit() and 6 <= len(v) <= 18 and v[-3:-1] in ("00", "10") and _verhoeff_ok(v)
            ):
                issues.append(
                    Issue(s.name, "code", f"{field_name} {code} is not a SNOMED CT concept id")
                )


def _check_part16(s: Structure, issues: list[Issue], report: ValidationReport) -> None:
    cid_for = {"category": 7150, "type": 7151, "type_modifier": 244, "region_modifier": 244}
    for field_name, code in _codes(s):
        meanings = part16.meanings_for(code.scheme, code.value, cid_for.get(field_name))
        if not meanings:
            if field_name != "type":
                issues.append(
                    Issue(s.name, "outside-part16", f"{field_name} {code} is not in Part 16")
                )
            elif not s.outside_part16_source:
                issues.append(
                    Issue(
                        s.name,
                        "outside-part16",
                        f"type {code} is not in Part 16: give the reference mapping that has "
                        "it in outside_part16_source, or use a Part 16 concept",
                    )
                )
            continue
        if code.meaning not in meanings:
            issues.append(
                Issue(
                    s.name,
                    "part16-meaning",
                    f"{field_name} {code}: Part 16's meaning is {meanings[0]!r}",
                )
            )
        if field_name == "type":
            if s.outside_part16_source:
                issues.append(
                    Issue(
                        s.name,
                        "outside-part16",
                        f"type {code} is in Part 16 but marked as outside it "
                        f"({s.outside_part16_source}); clear outside_part16_source",
                    )
                )
            if (code.scheme, code.value) not in part16.cid_members(7151):
                report.outside_cid7151.append(s)
                _check_outside_cid7151(s, issues)
    if (s.category.scheme, s.category.value) not in part16.cid_members(7150):
        issues.append(Issue(s.name, "category", f"category {s.category} is not in CID 7150"))
    laterality = part16.cid_members(244) | part16.cid_members(2)
    for field_name in ("type_modifier", "region_modifier"):
        code = getattr(s, field_name)
        if code is not None and (code.scheme, code.value) not in laterality:
            issues.append(Issue(s.name, "category", f"{field_name} {code} is not in CID 244/2"))


def _check_outside_cid7151(s: Structure, issues: list[Issue]) -> None:
    allowed = OUTSIDE_CID7151.get(s.name)
    if allowed is None:
        issues.append(
            Issue(
                s.name,
                "cid7151",
                f"type {s.type} is in Part 16 but not in CID 7151: use a CID 7151 concept, or "
                "add the row to OUTSIDE_CID7151 with the reason CID 7151 has none",
            )
        )
    elif allowed[0] != s.type.value:
        issues.append(
            Issue(
                s.name,
                "cid7151",
                f"type {s.type} is not in CID 7151 and OUTSIDE_CID7151 allows this row only "
                f"with type {allowed[0]}: use a CID 7151 concept, or update its entry and reason",
            )
        )


def _name_side(name: str) -> str | None:
    tokens = set(re.split(r"[_\s]+", name.lower()))
    sides = tokens & {"left", "right"}
    return sides.pop() if len(sides) == 1 else None


def _meaning_side(meaning: str) -> str | None:
    sides = set(re.findall(r"\b(left|right)\b", meaning.lower()))
    return sides.pop() if len(sides) == 1 else None


def _modifier_side(s: Structure) -> str | None:
    for code in (s.type_modifier, s.region_modifier):
        if code is not None and code.value in _SIDE_OF_MODIFIER:
            return _SIDE_OF_MODIFIER[code.value]
    return None


def _check_laterality(structures: Sequence[Structure], issues: list[Issue]) -> None:
    by_name = {s.name: s for s in structures}
    for s in structures:
        meaning_side = _meaning_side(s.type.meaning)
        modifier_side = _modifier_side(s)
        name_side = _name_side(s.name)
        if meaning_side and modifier_side and meaning_side != modifier_side:
            issues.append(
                Issue(
                    s.name,
                    "laterality",
                    f"type {s.type} names the {meaning_side} side but the modifier is "
                    f"{modifier_side}",
                )
            )
        side = modifier_side or meaning_side
        if name_side != side:
            issues.append(
                Issue(
                    s.name,
                    "laterality",
                    f"the name says {name_side or 'no side'} but the coding says "
                    f"{side or 'no side'}",
                )
            )
    for s in structures:
        if _name_side(s.name) != "left":
            continue
        other = by_name.get(re.sub(r"(^|_)left(_|$)", r"\1right\2", s.name))
        if other is None:
            continue
        sided_types = _meaning_side(s.type.meaning) and _meaning_side(other.type.meaning)
        if sided_types and not (s.type_modifier or other.type_modifier):
            continue
        same = (s.type.scheme, s.type.value, s.region) == (
            other.type.scheme,
            other.type.value,
            other.region,
        )
        if not same or {_modifier_side(s), _modifier_side(other)} != {"left", "right"}:
            issues.append(
                Issue(
                    s.name,
                    "laterality",
                    f"the pair {s.name}/{other.name} must share its type code ({s.type} vs "
                    f"{other.type}) and differ by the laterality modifier SCT {LEFT}/{RIGHT}",
                )
            )


def _check_entire(s: Structure, issues: list[Issue]) -> None:
    for field_name, code in _codes(s):
        entries = part16.concepts(code.scheme, code.value)
        in_7151 = any(7151 in e.cids and e.meaning == code.meaning for e in entries)
        entire_named = code.meaning.lower().startswith("entire") or any(
            e.meaning.lower().startswith("entire") for e in entries
        )
        if code.value in KNOWN_ENTIRE:
            issues.append(
                Issue(s.name, "entire", f"{field_name} {code} is {KNOWN_ENTIRE[code.value]}")
            )
        elif entire_named and not in_7151:
            issues.append(
                Issue(
                    s.name,
                    "entire",
                    f"{field_name} {code} is an 'Entire ...' concept; use the 'Structure of ...' "
                    "concept (PS3.16 guidance)",
                )
            )


def _check_spelling(s: Structure, issues: list[Issue]) -> None:
    known = part16.vocabulary() | EXTRA_WORDS
    for field_name, code in _codes(s):
        for word in re.findall(r"[A-Za-z]+", code.meaning):
            lower = word.lower()
            if lower in KNOWN_MISSPELLINGS:
                hint = f" Did you mean {KNOWN_MISSPELLINGS[lower]!r}?"
            elif lower not in known:
                hint = suggestion(lower, known)
            else:
                continue
            issues.append(
                Issue(
                    s.name,
                    "spelling",
                    f"{field_name} {code}: {word!r} is not a word of Part 16.{hint}",
                )
            )


def _check_duplicates(
    structures: Sequence[Structure], labels: Sequence[LabelRow], issues: list[Issue]
) -> None:
    seen: dict[tuple[str, ...], list[Structure]] = defaultdict(list)
    for s in structures:
        seen[tuple(str(k) for k in s.key)].append(s)
    for same in seen.values():
        if len(same) > 1:
            names = {s.name for s in same}
            models = sorted({row.model for row in labels if row.structure in names})
            for s in same[1:]:
                issues.append(
                    Issue(
                        s.name,
                        "duplicate",
                        f"coded exactly as {same[0].name} ({s.type}, modifier "
                        f"{s.type_modifier}); models {models} could not tell them apart",
                    )
                )


def _reference_types(reference_dir: Path) -> dict[str, set[tuple[str, str]]]:
    """(code, meaning) pairs each reference mapping gives as a type, misspellings corrected."""
    found: dict[str, set[tuple[str, str]]] = {}
    for name, prefix in REFERENCE_FILES.items():
        with (reference_dir / name).open(newline="", encoding="utf-8") as fh:
            lines = [line for line in fh if not line.startswith('"# ')]
        pairs = set()
        for row in csv.DictReader(lines):
            value = (row.get(prefix + "CodeValue") or "").strip()
            meaning = (row.get(prefix + "CodeMeaning") or "").strip().lower()
            for wrong, right in KNOWN_MISSPELLINGS.items():
                meaning = re.sub(rf"\b{wrong}\b", right, meaning)
            pairs.add((value, meaning))
        found[name] = pairs
    return found


def _check_sources(
    structures: Sequence[Structure],
    labels: Sequence[LabelRow],
    reference_dir: Path,
    issues: list[Issue],
) -> None:
    types = _reference_types(reference_dir)
    for s in structures:
        if not s.outside_part16_source:
            continue
        for source in (p.strip() for p in s.outside_part16_source.split(";")):
            if source not in types:
                issues.append(
                    Issue(
                        s.name,
                        "outside-part16",
                        f"unknown source {source!r}: cite one of {sorted(types)}",
                    )
                )
            elif (s.type.value, s.type.meaning.lower()) not in types[source]:
                issues.append(
                    Issue(
                        s.name,
                        "outside-part16",
                        f"{source} does not give type {s.type} with this meaning",
                    )
                )
    check_class_lists(labels, reference_dir, issues)


def validate_structures(
    structures: Sequence[Structure],
    labels: Sequence[LabelRow] = (),
    *,
    reference_dir: Path | None = None,
) -> ValidationReport:
    """Check the catalog against every rule of the catalog (see the module docstring).

    Parameters
    ----------
    structures
        The structures, for example from :func:`~omas_idc.catalog.read_structures_csv`.
    labels
        The model label rows (every family's label table); the ``labels`` and ``color``
        rules check these, and none where there are none.
    reference_dir
        ``../shared/reference/coding`` (the public mappings). Where given, the sources cited
        for outside-Part-16 codes and the label names of models with a class list there are
        checked against it too.

    Returns
    -------
    ValidationReport
        The broken rules, and the structures coded outside Part 16 / outside CID 7151.
    """
    report = ValidationReport()
    issues = report.errors
    for s in structures:
        _check_codes(s, issues)
        _check_part16(s, issues, report)
        _check_entire(s, issues)
        _check_spelling(s, issues)
        if s.outside_part16_source:
            report.outside_part16.append(s)
    _check_laterality(structures, issues)
    _check_duplicates(structures, labels, issues)
    check_labels(structures, labels, issues)
    check_colors(structures, labels, issues)
    if reference_dir is not None:
        _check_sources(structures, labels, reference_dir, issues)
        report.sources_checked = True
    return report
