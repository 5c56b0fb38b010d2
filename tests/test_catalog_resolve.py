"""Label tables resolve to catalog structures: by number for CADS/TotalSegmentator, by name
for models trained with omas-idc; disagreements are errors, never guesses."""

from __future__ import annotations

import pytest

from omas_idc.catalog import load_catalog
from omas_idc.errors import CatalogError


def test_cads_labels_resolve_by_number_and_must_agree_by_name() -> None:
    catalog = load_catalog()
    resolved = catalog.resolve_labels("cads", "551", {2: "kidney_right", 3: "kidney_left"})
    assert resolved[3].name == "kidney_left"
    assert resolved[3].type_modifier is not None
    with pytest.raises(CatalogError, match="kidney_left"):
        catalog.resolve_labels("cads", "551", {2: "kidney_left"})


def test_own_models_name_their_labels_by_catalog_structure() -> None:
    catalog = load_catalog()
    resolved = catalog.resolve_labels("my-trained-model", "1", {1: "liver", 2: "spleen"})
    assert [s.name for s in resolved.values()] == ["liver", "spleen"]
    with pytest.raises(CatalogError, match="no structure named"):
        catalog.resolve_labels("my-trained-model", "1", {1: "livr"})


def test_the_demo_models_labels_resolve_through_its_label_table() -> None:
    catalog = load_catalog()
    assert "omas-demo" in catalog.models()
    assert catalog.tasks("omas-demo") == ("900",)
    resolved = catalog.resolve_labels("omas-demo", "900", {1: "liver", 3: "kidney_left"})
    assert [s.name for s in resolved.values()] == ["liver", "kidney_left"]
    with pytest.raises(CatalogError, match="calls it 'spleen'"):
        catalog.resolve_labels("omas-demo", "900", {1: "spleen"})
