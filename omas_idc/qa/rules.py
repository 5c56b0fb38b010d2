"""The QA rule registry: each rule with its SR concept, its thresholds and the data it reads.

A rule (:class:`QARule`) is what :mod:`omas_idc.qa.checks` applies to a segment; its
:class:`~omas_idc.qa.records.Finding` names it by :class:`Check`. The TID 1500 SR
(:mod:`omas_idc.qa.sr`) writes each finding as a qualitative evaluation whose concept is the
rule's :attr:`QARule.concept`, and each verdict as the value concept of :data:`QA_RULES`.
A new rule is one entry here (check, concept, thresholds, plausibility columns) and its check
function; the SR writer needs no change.

The concepts have no DICOM or SNOMED CT equivalent, so they belong to the private coding
scheme ``99OMAS`` (:mod:`omas_idc.coding`). Their values never change once released: a published SR
refers to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from omas_idc.catalog.model import Code
from omas_idc.choices import StrEnum, choose
from omas_idc.coding import OMAS_SCHEME
from omas_idc.errors import QAError
from omas_idc.qa.plausibility import (
    StructureExpectation,
    default_plausibility_path,
    load_plausibility,
    read_plausibility_csv,
)
from omas_idc.qa.records import Verdict

__all__ = ["QA_RULES", "Check", "QARegistry", "QARule"]


class Check(StrEnum):
    """The QA checks, as :attr:`omas_idc.qa.records.Finding.check` names them."""

    TRUNCATION = "truncation"
    COMPONENTS = "components"
    LATERALITY = "laterality"
    PLAUSIBILITY = "plausibility"
    MINIMUM_VOLUME = "minimum_volume"
    STATUS = "status"


@dataclass(frozen=True)
class QARule:
    """One QA rule (the rules themselves are documented in :mod:`omas_idc.qa.checks`).

    Attributes
    ----------
    check
        Its identifier, the ``check`` of the findings it produces.
    concept
        The concept naming its qualitative evaluation in the SR.
    thresholds
        Its named thresholds (``{"tolerance_mm": 5.0}``).
    columns
        The columns of the plausibility table (``dicom_templates/plausibility.csv``) it reads.
    """

    check: Check
    concept: Code
    thresholds: Mapping[str, float] = field(default_factory=dict)
    columns: tuple[str, ...] = ()

    def threshold(self, name: str) -> float:
        """The threshold called ``name``.

        Raises
        ------
        QAError
            If the rule has no such threshold (with the closest name).
        """
        return self.thresholds[choose(name, self.thresholds, f"{self.check} threshold", QAError)]


@dataclass(frozen=True)
class QARegistry:
    """The QA rules, the verdict concepts of the SR, and the plausibility data the rules read.

    Attributes
    ----------
    rules
        Check -> rule, in the order the checks run.
    segment_verdict, series_verdict
        The concepts naming a segment's and the series' verdict in the SR.
    verdicts
        Verdict -> its value concept.
    plausibility_path
        The per-structure plausibility table (volume ranges, one piece or several, small).
    """

    rules: Mapping[Check, QARule]
    segment_verdict: Code
    series_verdict: Code
    verdicts: Mapping[Verdict, Code]
    plausibility_path: Path = field(default_factory=default_plausibility_path)

    def rule(self, check: str) -> QARule:
        """The rule of ``check``.

        Raises
        ------
        QAError
            If no rule is registered for ``check`` (with the closest registered name).
        """
        return self.rules[Check(choose(str(check), self.rules, "QA check", QAError))]

    def concept(self, check: str) -> Code:
        """The SR concept of ``check``'s qualitative evaluation (see :meth:`rule`)."""
        return self.rule(check).concept

    def verdict_code(self, verdict: Verdict) -> Code:
        """The SR value concept of ``verdict``."""
        return self.verdicts[Verdict(verdict)]

    def expectations(self) -> dict[str, StructureExpectation]:
        """The per-structure plausibility data (the shipped table is read once and cached).

        Raises
        ------
        ConfigurationError
            If the table is malformed
            (:func:`~omas_idc.qa.plausibility.read_plausibility_csv`).
        """
        if self.plausibility_path == default_plausibility_path():
            return load_plausibility()
        return read_plausibility_csv(self.plausibility_path)


def _rule(
    check: Check,
    code: str,
    meaning: str,
    thresholds: Mapping[str, float] | None = None,
    columns: tuple[str, ...] = (),
) -> tuple[Check, QARule]:
    concept = Code(code, OMAS_SCHEME, meaning)
    return check, QARule(check, concept, MappingProxyType(dict(thresholds or {})), columns)


#: The shipped QA rules (thresholds: the laterality tolerance in mm, the fraction of a
#: structure's voxels its largest piece must hold to be fragments rather than split, and IDC's
#: 5 mL floor for structures without a cited range).
QA_RULES = QARegistry(
    rules=MappingProxyType(
        dict(
            [
                _rule(Check.TRUNCATION, "QA0001", "Field of view truncation check"),
                _rule(
                    Check.COMPONENTS,
                    "QA0002",
                    "Connected components check",
                    thresholds={"split_fraction": 0.9},
                    columns=("components",),
                ),
                _rule(
                    Check.LATERALITY,
                    "QA0003",
                    "Laterality check",
                    thresholds={"tolerance_mm": 5.0},
                ),
                _rule(
                    Check.PLAUSIBILITY,
                    "QA0004",
                    "Volume plausibility check",
                    columns=("min_ml", "max_ml", "source"),
                ),
                _rule(
                    Check.MINIMUM_VOLUME,
                    "QA0005",
                    "Minimum volume check",
                    thresholds={"min_volume_ml": 5.0},
                    columns=("small",),
                ),
                _rule(Check.STATUS, "QA0006", "Expected structure status check"),
            ]
        )
    ),
    segment_verdict=Code("QA0010", OMAS_SCHEME, "Segment quality control verdict"),
    series_verdict=Code("QA0011", OMAS_SCHEME, "Series quality control verdict"),
    verdicts=MappingProxyType(
        {
            Verdict.PASS: Code("QA0100", OMAS_SCHEME, "Pass"),
            Verdict.WARN: Code("QA0101", OMAS_SCHEME, "Warning"),
            Verdict.FAIL: Code("QA0102", OMAS_SCHEME, "Fail"),
        }
    ),
)
