"""Errors name the series and the problem, and keep a machine-readable class and reason."""

from __future__ import annotations

import pytest

from omas_idc import errors


def test_every_error_is_an_omas_idc_error_with_a_reason() -> None:
    classes = [getattr(errors, name) for name in errors.__all__]
    assert errors.OmasIdcError in classes
    for cls in classes:
        assert issubclass(cls, errors.OmasIdcError)
        err = cls("what went wrong; how to fix it")
        assert err.reason == cls.default_reason
        assert err.error_class == cls.__name__


def test_message_names_the_series_and_reason_is_kept() -> None:
    err = errors.SeriesGeometryError(
        "slices are missing: a 202 mm gap", series_instance_uid="1.2.3", reason="gap"
    )
    assert str(err) == "series 1.2.3: slices are missing: a 202 mm gap"
    assert err.reason == "gap"
    with pytest.raises(errors.OmasIdcError, match=r"1\.2\.3"):
        raise err
