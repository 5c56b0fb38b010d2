"""The QA rule registry: each rule's SR concept, thresholds and plausibility data in one place."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from omas_idc.coding import OMAS_SCHEME
from omas_idc.errors import ConfigurationError, QAError
from omas_idc.qa import LATERALITY_TOLERANCE_MM, MINIMUM_VOLUME_ML, SPLIT_FRACTION, Status, Verdict
from omas_idc.qa.plausibility import PLAUSIBILITY_COLUMNS
from omas_idc.qa.rules import QA_RULES, Check

#: The concepts as released: published SRs refer to them, so they never change.
RELEASED = {
    "truncation": ("QA0001", "Field of view truncation check"),
    "components": ("QA0002", "Connected components check"),
    "laterality": ("QA0003", "Laterality check"),
    "plausibility": ("QA0004", "Volume plausibility check"),
    "minimum_volume": ("QA0005", "Minimum volume check"),
    "status": ("QA0006", "Expected structure status check"),
}


def test_every_check_has_its_released_concept() -> None:
    assert set(QA_RULES.rules) == set(Check)
    for check, (value, meaning) in RELEASED.items():
        concept = QA_RULES.concept(check)
        assert (concept.value, concept.scheme, concept.meaning) == (value, OMAS_SCHEME, meaning)
    assert (QA_RULES.segment_verdict.value, QA_RULES.series_verdict.value) == ("QA0010", "QA0011")
    assert {v.value: QA_RULES.verdict_code(v).value for v in Verdict} == {
        "pass": "QA0100",
        "warn": "QA0101",
        "fail": "QA0102",
    }


def test_concepts_are_distinct() -> None:
    """An SR reader tells the evaluations apart by their concept alone."""
    names = [r.concept.value for r in QA_RULES.rules.values()]
    names += [QA_RULES.segment_verdict.value, QA_RULES.series_verdict.value]
    values = [c.value for c in QA_RULES.verdicts.values()]
    assert len(set(names + values)) == len(names) + len(values)


def test_thresholds_and_data_come_from_the_registry() -> None:
    assert LATERALITY_TOLERANCE_MM == QA_RULES.rule("laterality").threshold("tolerance_mm") == 5.0
    assert MINIMUM_VOLUME_ML == QA_RULES.rule("minimum_volume").threshold("min_volume_ml") == 5.0
    assert SPLIT_FRACTION == QA_RULES.rule("components").threshold("split_fraction") == 0.9
    for rule in QA_RULES.rules.values():
        assert set(rule.columns) <= set(PLAUSIBILITY_COLUMNS), rule.check


def test_an_unknown_check_or_threshold_says_what_exists() -> None:
    with pytest.raises(QAError, match="Did you mean 'laterality'"):
        QA_RULES.concept("lateraliti")
    with pytest.raises(QAError, match="tolerance_mm"):
        QA_RULES.rule("laterality").threshold("tolerance")


def test_a_registry_reads_its_own_plausibility_table(tmp_path: Path) -> None:
    path = tmp_path / "plausibility.csv"
    path.write_text(
        ",".join(PLAUSIBILITY_COLUMNS) + "\nliver,100,200,1,no,a cited source,\n",
        encoding="utf-8",
    )
    mine = replace(QA_RULES, plausibility_path=path)
    assert mine.expectations()["liver"].volume_range == (100.0, 200.0)
    assert QA_RULES.expectations()["liver"].volume_range != (100.0, 200.0)


def test_verdicts_and_statuses_are_string_choices() -> None:
    assert Verdict.parse("warn", "verdict") is Verdict.WARN
    assert str(Status.OUTSIDE_FOV) == "outside_fov"
    assert Status.PRESENT == "present"
    with pytest.raises(ConfigurationError, match="Did you mean 'fail'"):
        Verdict.parse("fial", "verdict")
