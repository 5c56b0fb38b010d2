"""The one choice look-up: the same "did you mean" wherever a name is checked."""

from __future__ import annotations

import pytest

from omas_idc.choices import StrEnum, choose, did_you_mean
from omas_idc.errors import ConfigurationError, SelectionError


class Colour(StrEnum):
    RED = "red"
    GREEN = "green"


def test_choose_returns_a_known_value_and_suggests_the_closest() -> None:
    assert choose("cads", ["cads", "totalseg"], "model") == "cads"
    with pytest.raises(ConfigurationError, match=r"unknown model 'cadz'.*Did you mean 'cads'\?"):
        choose("cadz", ["cads", "totalseg"], "model")


def test_the_error_class_is_the_callers() -> None:
    err = did_you_mean("nlts", ["nlst"], "collection", SelectionError)
    assert isinstance(err, SelectionError)
    assert "Did you mean 'nlst'?" in str(err)


def test_str_enum_members_equal_their_strings_and_parse_with_suggestions() -> None:
    assert Colour.parse("red", "colour") is Colour.RED
    assert Colour.RED == "red"
    assert str(Colour.GREEN) == "green"
    with pytest.raises(ConfigurationError, match="Did you mean 'green'"):
        Colour.parse("gren", "colour")
