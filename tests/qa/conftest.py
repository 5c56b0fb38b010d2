"""Phantoms for the QA tests: full-body 3 mm grids in every acquisition option."""

from __future__ import annotations

from pathlib import Path

import pytest

from omas_idc.catalog import load_catalog
from omas_idc.catalog.model import Catalog
from omas_idc.phantom import Phantom, PhantomOptions, make_phantom
from omas_idc.read import read_series
from omas_idc.volume import CTVolume

#: Seed whose organ sizes lie inside the cited adult ranges of plausibility.csv.
SEED = 2
SPACING = 3.0
#: The field of view (LPS x, y, z extent in mm) that holds the whole phantom anatomy.
FOV = (440.0, 310.0, 420.0)

ORIENTATIONS = [
    {"orientation": "axial"},
    {"orientation": "axial", "flip_rows": True, "flip_columns": True},
    {"orientation": "axial", "patient_position": "FFS"},
    {"orientation": "axial", "patient_position": "HFP"},
    {"orientation": "axial", "patient_position": "FFP", "flip_columns": True},
    {"orientation": "coronal"},
    {"orientation": "sagittal", "flip_rows": True},
    {"orientation": "axial", "oblique_degrees": 7.0},
    {"orientation": "axial", "gantry_tilt_degrees": 15.0},
]


def option_id(option: dict[str, object]) -> str:
    return "-".join(f"{k}={v}" for k, v in option.items())


def grid(option: dict[str, object]) -> dict[str, object]:
    """A 3 mm grid covering :data:`FOV` in the option's orientation."""
    x, y, z = (int(extent / SPACING) for extent in FOV)
    shape = {"axial": (z, y, x), "coronal": (y, z, x), "sagittal": (x, z, y)}
    return {
        "shape": shape[str(option.get("orientation", "axial"))],
        "pixel_spacing": (SPACING, SPACING),
        "slice_spacing": SPACING,
        "noise": 12.0,
    }


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="module", params=ORIENTATIONS, ids=option_id)
def phantom_series(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Phantom, CTVolume]:
    """A written and read phantom in one acquisition option (shared by a module's tests)."""
    option: dict[str, object] = request.param
    folder: Path = tmp_path_factory.mktemp("qa-phantom") / "ct"
    phantom = make_phantom(folder, PhantomOptions(seed=SEED, **grid(option), **option))  # type: ignore[arg-type]
    return phantom, read_series(folder)


@pytest.fixture(scope="session")
def seed() -> int:
    """The phantom seed of the QA tests (:data:`SEED`)."""
    return SEED
