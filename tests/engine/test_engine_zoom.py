"""The wrappers' own resampling (CADS, TotalSegmentator): the tools' zoom, voxel for voxel.

The reference here is written the way the tools do it: the series as NIfTI, nibabel's closest
canonical (RAS) image, ``scipy.ndimage.zoom`` on ``get_fdata()`` with the header's zooms over
1.5, cast to int32; labels back with ``zoom(order=0)`` to the original shape. omas-idc gets the
same voxels from the DICOM reader and its canonical orientation.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage

from omas_idc.engine.card import WrapperZoom, ZSplit, load_card
from omas_idc.engine.preprocessing import CanonicalOrientation
from omas_idc.engine.zoom import zoom_input, zoom_labels, zoom_shape
from omas_idc.nifti import volume_to_nifti
from omas_idc.phantom import PhantomOptions, make_phantom
from omas_idc.read import read_series

CADS = WrapperZoom(order=3, mode="constant", cast="int32", identity_when_equal=False)
TOTALSEG = WrapperZoom(order=1, mode="nearest", cast="int32", identity_when_equal=True)


def _tool_zoom(image: nib.Nifti1Image, spec: WrapperZoom, target: float = 1.5) -> np.ndarray:
    """The input resampling as the tools write it (RAS array, header zooms)."""
    canonical = nib.as_closest_canonical(image)
    zooms = np.array(canonical.header.get_zooms()[:3])
    return ndimage.zoom(
        canonical.get_fdata(), zooms / target, order=spec.order, mode=spec.mode
    ).astype(np.int32)


@pytest.mark.parametrize("spec", [CADS, TOTALSEG], ids=["cads", "totalseg"])
@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"orientation": "coronal"},
        {"patient_position": "FFP"},
        {"oblique_degrees": 20.0},
        {"gantry_tilt_degrees": 15.0},
    ],
    ids=["axial", "coronal", "ffp", "oblique", "tilt"],
)
def test_input_zoom_is_the_tools_own(tmp_path: Path, spec: WrapperZoom, changes: dict) -> None:
    options = replace(PhantomOptions(shape=(40, 48, 44)), **changes)
    volume = read_series(make_phantom(tmp_path, options).files[0].parent)
    image = volume_to_nifti(volume)
    nib.save(image, tmp_path / "ct.nii.gz")  # the tools read a file: float32 header zooms
    expected = _tool_zoom(nib.load(tmp_path / "ct.nii.gz"), spec)

    orientation = CanonicalOrientation.of(volume.geometry)
    canonical = orientation.to_canonical(torch.from_numpy(np.ascontiguousarray(volume.hu)))
    assert orientation.step_lengths is not None
    ours = zoom_input(canonical, orientation.step_lengths, 1.5, spec)
    assert zoom_shape(canonical.shape, orientation.step_lengths, 1.5) == tuple(ours.shape)
    # canonical (S, A, R) is the RAS array transposed: every voxel equal, none flipped
    assert ours.numpy().transpose(2, 1, 0).shape == expected.shape
    np.testing.assert_array_equal(ours.numpy().transpose(2, 1, 0), expected)


def test_totalsegmentator_skips_resampling_at_its_spacing() -> None:
    hu = torch.arange(5 * 6 * 7, dtype=torch.int16).reshape(5, 6, 7)
    out = zoom_input(hu, (1.5, 1.5, 1.5), 1.5, TOTALSEG)
    assert torch.equal(out, hu.float())
    # CADS resamples whatever the spacing (a zoom by 1: cubic spline through the samples)
    cads = zoom_input(hu, (1.5, 1.5, 1.5), 1.5, CADS)
    assert cads.shape == hu.shape


@pytest.mark.parametrize("mode", ["constant", "nearest"])
def test_labels_back_as_zoom_order_0(mode: str) -> None:
    """Growing and shrinking axes, both modes; with ``constant`` the last sample of an axis can
    fall just outside the input, where scipy writes 0, and so do we."""
    rng = np.random.default_rng(3)
    zeros_seen = False
    for _ in range(150):
        shape = tuple(int(n) for n in rng.integers(3, 30, 3))
        target = tuple(int(n) for n in rng.integers(3, 45, 3))
        labels = rng.integers(1, 250, shape).astype(np.uint8)
        factors = np.array(target) / np.array(shape)
        expected = ndimage.zoom(
            labels.transpose(2, 1, 0).astype(np.float64), factors[::-1], order=0, mode=mode
        )
        expected = expected.astype(np.uint8).transpose(2, 1, 0)
        ours = zoom_labels(torch.from_numpy(labels), target, mode).numpy()
        np.testing.assert_array_equal(ours, expected)
        zeros_seen |= bool((expected == 0).any())
    assert zeros_seen == (mode == "constant")


def test_z_split_is_totalsegmentators() -> None:
    """The three parts and how they are put back, as TotalSegmentator's nnunet.py slices."""
    split = load_card("totalseg").z_split
    assert split == ZSplit(512 * 512 * 900, 200, 20)
    assert load_card("cads").z_split is None
    for n in (60, 201, 333, 1000):
        data = np.arange(n)
        third, margin = n // 3, 20
        pieces = [
            data[: third + margin],
            data[third + 1 - margin : third * 2 + margin],
            data[third * 2 + 1 - margin :],
        ]
        combined = np.zeros(n, dtype=int) - 1
        combined[:third] = pieces[0][:-margin]
        combined[third : third * 2] = pieces[1][margin - 1 : -margin]
        combined[third * 2 :] = pieces[2][margin - 1 :]
        ours = np.zeros(n, dtype=int) - 1
        for (lo, hi, keep_lo, keep_hi), piece in zip(split.parts(n), pieces, strict=True):
            np.testing.assert_array_equal(data[lo:hi], piece)
            ours[keep_lo:keep_hi] = data[lo:hi][keep_lo - lo : keep_hi - lo]
        np.testing.assert_array_equal(ours, combined)
    assert split.applies((901, 512, 512))
    assert not split.applies((900, 512, 512))
    assert not split.applies((200, 2000, 2000))  # too few slices
    assert split.applies((60, 64, 64), force=True)
