"""Look-ups in the DICOM PS3.16 concept dictionary that pydicom ships (``pydicom.sr``).

pydicom keeps Part 16's concepts as ``{scheme: {keyword: {code: (meaning, [cids])}}}``; one code
can appear under several keywords with different meanings (``64033007`` is "Kidney" in
CID 7151 and "Endo-renal" in CID 4), and SNOMED CT's fully specified names sit beside them with
no context group. These helpers turn that into per-code answers.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import cast

__all__ = [
    "Concept",
    "cid_members",
    "concepts",
    "is_segmentation_type_cid",
    "meanings_for",
    "vocabulary",
]

#: CID 7150 (categories) to 7199: the segmentation context groups of PS3.16.
_SEGMENTATION_CIDS = range(7150, 7200)


@dataclass(frozen=True)
class Concept:
    """One Part 16 entry of a code: its meaning and the context groups that list it."""

    keyword: str
    meaning: str
    cids: tuple[int, ...]


def is_segmentation_type_cid(cid: int) -> bool:
    """Whether ``cid`` is CID 7151 or one of the segmentation groups around it (7150-7199)."""
    return cid in _SEGMENTATION_CIDS


@functools.lru_cache(maxsize=1)
def _index() -> dict[tuple[str, str], tuple[Concept, ...]]:
    from pydicom.sr._concepts_dict import concepts as pydicom_concepts

    by_scheme = cast(dict[str, dict[str, dict[str, tuple[str, list[int]]]]], pydicom_concepts)
    index: dict[tuple[str, str], list[Concept]] = {}
    for scheme, by_keyword in by_scheme.items():
        for keyword, by_code in by_keyword.items():
            for code, (meaning, cids) in by_code.items():
                index.setdefault((scheme, code), []).append(Concept(keyword, meaning, tuple(cids)))
    return {key: tuple(entries) for key, entries in index.items()}


def concepts(scheme: str, value: str) -> tuple[Concept, ...]:
    """The Part 16 entries of a code; empty where Part 16 does not have it."""
    return _index().get((scheme, value), ())


def meanings_for(scheme: str, value: str, cid: int | None = None) -> tuple[str, ...]:
    """The meanings Part 16 gives a code in the context where it is used.

    Parameters
    ----------
    scheme, value
        The code.
    cid
        The context group it is used in. Where Part 16 lists the code there, only that
        group's meaning is returned. Otherwise, for a segmentation group (7150-7199), the
        meanings the code has in any segmentation group; then those in any context group;
        then SNOMED's fully specified names.

    Returns
    -------
    tuple of str
        Empty where Part 16 does not have the code. The first meaning is the preferred one.
    """
    entries = concepts(scheme, value)
    tiers = []
    if cid is not None:
        tiers.append([e for e in entries if cid in e.cids])
        if is_segmentation_type_cid(cid):
            tiers.append([e for e in entries if any(map(is_segmentation_type_cid, e.cids))])
    tiers.append([e for e in entries if e.cids])
    tiers.append(list(entries))
    for tier in tiers:
        if tier:
            return tuple(dict.fromkeys(e.meaning for e in tier))
    return ()


@functools.cache
def cid_members(cid: int) -> frozenset[tuple[str, str]]:
    """The (scheme, value) codes that Part 16 lists in context group ``cid``."""
    return frozenset(
        key for key, entries in _index().items() if any(cid in e.cids for e in entries)
    )


@functools.lru_cache(maxsize=1)
def vocabulary() -> frozenset[str]:
    """Every word (lower case) of every Part 16 code meaning: the spelling reference."""
    words: set[str] = set()
    for entries in _index().values():
        for entry in entries:
            words.update(w.lower() for w in re.findall(r"[A-Za-z]+", entry.meaning))
    return frozenset(words)
