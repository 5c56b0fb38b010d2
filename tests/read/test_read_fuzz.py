"""Flipped and truncated bytes in real series: a correct volume or a named error, nothing else.

Each case damages one file of a small series (a flipped byte anywhere, or the file cut at any
length) and reads the folder. The outcome must be one of:

- the volume read from the undamaged series (same HU, same grid): the byte did not matter;
- a volume that differs only in the slices of the damaged file, where the flipped byte lies in
  that file's pixel data (its values are the pixels) or a warning names the file;
- an :class:`~omas_idc.errors.OmasIdcError` whose message names the damaged file.

Never another exception (a traceback), never a silently different volume or grid.
Fixed seeds and a bounded number of cases keep it reproducible and a few seconds long.
"""

from __future__ import annotations

import random
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest

from omas_idc.errors import OmasIdcError
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.read import read_series
from omas_idc.volume import CTVolume

#: Small real series of ../shared/data (PROVENANCE.md): explicit VR (5 slices, 16 x 16) and
#: implicit VR (3 slices, 38 x 24) little endian.
REAL_SERIES = {
    "pydicom-CT5N": "pydicom/test_files/dicomdirtests/98892001/CT5N",
    "dcmqi-24x38x3": "dcmqi/data/segmentations/24x38x3/image",
}
#: Damaged copies read per series (half flips, half truncations).
CASES_PER_SERIES = 150


@dataclass(frozen=True)
class Damage:
    """One damaged file: what was done, where, and the byte range of its pixel data."""

    path: Path
    kind: str
    offset: int
    pixels: range

    def __str__(self) -> str:
        return f"{self.kind} at byte {self.offset} of {self.path.name}"


def _pixel_range(path: Path) -> range:
    """Byte offsets of the pixel data's value in ``path`` (to its end where encapsulated)."""
    element = pydicom.dcmread(path, defer_size=0).get_item("PixelData", keep_deferred=True)
    start = int(element.value_tell)
    size = path.stat().st_size
    end = size if element.length == 0xFFFFFFFF else start + int(element.length)
    return range(start, end)


def _damage(path: Path, original: bytes, rng: random.Random, pixels: range) -> Damage:
    data = bytearray(original)
    if rng.random() < 0.5:
        offset = rng.randrange(len(data))
        data[offset] ^= rng.randrange(1, 256)
        kind = "flip"
    else:
        offset = rng.randrange(len(data))
        del data[offset:]
        kind = "cut"
    path.write_bytes(bytes(data))
    return Damage(path, kind, offset, pixels)


def _check_outcome(folder: Path, reference: CTVolume, damage: Damage) -> str:
    """Read ``folder`` and return the outcome's name; fail on any unacceptable outcome."""
    error: OmasIdcError | None = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom's warnings about the damaged values
            volume = read_series(folder)
    except OmasIdcError as err:
        error = err
    except Exception as err:  # noqa: BLE001 - the property under test: only named errors
        pytest.fail(f"{damage}: {type(err).__name__} instead of a named error: {err}")
    if error is not None:
        assert str(damage.path) in str(error), f"{damage}: the error names no file: {error}"
        return f"error:{error.reason}"
    where = f"{damage}: a different volume without a named error"
    assert volume.shape == reference.shape, where
    np.testing.assert_allclose(volume.geometry.affine, reference.geometry.affine, err_msg=where)
    differs = np.flatnonzero((volume.hu != reference.hu).any(axis=(1, 2)))
    if differs.size == 0:
        return "same"
    damaged_slices = {i for i, f in enumerate(volume.files) if Path(f).name == damage.path.name}
    assert set(differs.tolist()) <= damaged_slices, f"{where}: other slices changed"
    in_pixels = damage.kind == "flip" and damage.offset in damage.pixels
    warned = any(damage.path.name in w for w in volume.warnings)
    assert in_pixels or warned, where
    return "pixels changed" if in_pixels else "warned"


def _fuzz(source: Path, tmp_path: Path, seed: int) -> dict[str, int]:
    folder = tmp_path / "series"
    shutil.copytree(source, folder)
    reference = read_series(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    originals = {p: p.read_bytes() for p in files}
    pixels = {p: _pixel_range(p) for p in files}
    rng = random.Random(seed)
    outcomes: dict[str, int] = {}
    for _ in range(CASES_PER_SERIES):
        path = rng.choice(files)
        damage = _damage(path, originals[path], rng, pixels[path])
        outcome = _check_outcome(folder, reference, damage)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        path.write_bytes(originals[path])
    return outcomes


def _assert_exercised(outcomes: dict[str, int]) -> None:
    """Both kinds of outcome occurred (else the cases would not test the property)."""
    assert outcomes.get("same", 0) > 0, outcomes
    assert sum(n for k, n in outcomes.items() if k.startswith("error:")) > 0, outcomes


@pytest.mark.parametrize("name", sorted(REAL_SERIES))
def test_damaged_real_series_read_correctly_or_name_the_file(
    shared_data: Path, tmp_path: Path, name: str
) -> None:
    outcomes = _fuzz(
        shared_data / REAL_SERIES[name], tmp_path, seed=sorted(REAL_SERIES).index(name)
    )
    _assert_exercised(outcomes)


@pytest.mark.parametrize("transfer_syntax", ["explicit", "rle"])
def test_damaged_phantom_series_read_correctly_or_name_the_file(
    tmp_path: Path, transfer_syntax: str
) -> None:
    source = tmp_path / "phantom"
    options = PhantomOptions(
        seed=5,
        shape=(6, 24, 28),
        pixel_spacing=(7.5, 8.0),
        slice_spacing=20.0,
        noise=0.0,
        transfer_syntax=transfer_syntax,
    )
    make_phantom(source, options)
    outcomes = _fuzz(source, tmp_path, seed=10 + len(transfer_syntax))
    _assert_exercised(outcomes)
    assert outcomes.get("pixels changed", 0) > 0, outcomes
