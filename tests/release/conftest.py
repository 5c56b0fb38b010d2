"""Fixtures of the release tests: the catalog and a small phantom series."""

from __future__ import annotations

import pytest
from release_helpers import GRID

from omas_idc.catalog import load_catalog
from omas_idc.catalog.model import Catalog
from omas_idc.phantom import Phantom, PhantomOptions, make_phantom


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Phantom:
    """An axial head-first-supine phantom series (the DICOM side of most tests)."""
    folder = tmp_path_factory.mktemp("release-dicom") / "axial"
    return make_phantom(folder, PhantomOptions(seed=1, **GRID))  # type: ignore[arg-type]
