"""Shared fixtures and marker handling for the omas-idc test suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ../shared/data beside the checkout (as laid out for developers and CI).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_network = os.environ.get("OMAS_IDC_NETWORK_TESTS") == "1"
    has_gpu = None
    for item in items:
        if "network" in item.keywords and not run_network:
            item.add_marker(
                pytest.mark.skip(reason="needs the internet; set OMAS_IDC_NETWORK_TESTS=1 to run")
            )
        if "gpu" in item.keywords:
            if has_gpu is None:
                has_gpu = _cuda_available()
            if not has_gpu:
                item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real DICOM of ../shared/data; tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_reference() -> Path:
    """The public coding references of ../shared/reference."""
    if not SHARED_REFERENCE.is_dir():
        pytest.skip(f"reference mappings not found at {SHARED_REFERENCE}")
    return SHARED_REFERENCE


@pytest.fixture(scope="session")
def threshold_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An nnU-Net folder whose network thresholds HU: soft tissue -> liver, bone -> vertebra
    (the model of the run, store and DICOMweb tests)."""
    from omas_idc.engine.synthetic import SyntheticModel, make_model_folder

    return make_model_folder(
        tmp_path_factory.mktemp("model"),
        SyntheticModel(
            labels=("liver", "vertebrae_L1"),
            weights="threshold",
            thresholds_hu=(-200.0, 250.0),
            spacing=(20.0, 12.0, 12.0),
            patch_size=(8, 16, 16),
            folds=("all",),
        ),
    )
