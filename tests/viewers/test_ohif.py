"""OHIF 3.13 (IDC's web viewer) shows each SEG right: at chosen slices, every segment's
recommended colour (the catalog's) is drawn where the truth says the structure is, in both
layouts and in two acquisition orientations, with the patient's left on the viewer's right.

OHIF runs in headless Chromium on the study as Orthanc serves it over DICOMweb; the SEG is
opened the way a user does (double-click on its thumbnail). The fill is made opaque so that
a drawn pixel has the segment's colour, and each colour is compared with every segment's
colour, so a colour given to the wrong segment fails. Screenshots stay in
``test-artifacts/viewers``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from viewer_support import DEMO_LABELS, LATERAL_PAIRS, Case, run_ohif

pytestmark = [pytest.mark.viewer, pytest.mark.slow]

#: Largest per-channel difference between a drawn pixel and the catalog colour (OHIF converts
#: the SEG's CIELab colour back to 8-bit RGB; rounding moves a channel by a few units).
COLOUR_TOLERANCE = 12

#: OHIF 3.13.2 (cornerstone3D's dcmjs SEG adapter, Segmentation_4X getSegmentMetadata) indexes
#: the Segment Sequence by position, assuming it starts at segment 1, so the LABELMAP SEG's
#: item for value 0 shifts every colour by one segment. That item is the standard's form.
LABELMAP_XFAIL = pytest.mark.xfail(
    strict=True,
    reason=(
        "OHIF 3.13.2 gives LABELMAP segment k the colour of segment k-1: it lists the item of "
        "pixel value 0 ('Background', Segment Number 0) as a segment and indexes the Segment "
        "Sequence by position. PS3.3 C.8.20.2.3.3: 'For a Segmentation Type (0062,0001) of "
        "LABELMAP, every pixel value actually encoded in Pixel Data (7FE0,0010) is required to "
        "be described in an Item of Segment Sequence (0062,0002)', so value 0 needs its item "
        "(highdicom and dcmqi write it, with Pixel Padding Value 0). Fixed upstream by "
        "cornerstonejs/cornerstone3D#2882 (index segment metadata by SegmentNumber for "
        "LABELMAP); passes once OHIF ships a cornerstone3D with it."
    ),
)

CASES = [
    pytest.param("axial-HFS", "binary", id="axial-HFS-binary"),
    pytest.param("coronal", "binary", id="coronal-binary"),
    pytest.param("axial-HFS", "labelmap", id="axial-HFS-labelmap", marks=LABELMAP_XFAIL),
    pytest.param("coronal", "labelmap", id="coronal-labelmap", marks=LABELMAP_XFAIL),
]


def _views(case: Case) -> list[dict[str, object]]:
    """One view per structure: the slice through a deep interior voxel of it, probing that
    voxel and the interior voxels of the lateral pairs' structures lying in the same slice."""
    views = []
    for label, name in DEMO_LABELS.items():
        point = case.interior_point(label)
        views.append(
            {
                "name": f"{case.name}-{name}",
                "point": case.world(point),
                "probes": [{"key": name, "label": label, "world": case.world(point)}],
            }
        )
    return views


def _drawn(image: Image.Image, xy: list[float]) -> tuple[int, int, int]:
    """The median colour of the 3x3 screen pixels around a position in the screenshot."""
    x, y = round(xy[0]), round(xy[1])
    patch = np.asarray(image.convert("RGB"))[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3)
    return tuple(int(v) for v in np.median(patch, axis=0))  # type: ignore[return-value]


def _distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def _nearest(colour: tuple[int, int, int], colours: dict[str, tuple[int, int, int]]) -> str:
    return min(colours, key=lambda k: _distance(colour, colours[k]))


@pytest.mark.parametrize(("acquisition", "layout"), CASES)
def test_ohif_draws_each_segment_in_its_colour_where_the_truth_is(
    acquisition: str,
    layout: str,
    cases: dict[str, Case],
    ohif: str,
    artifacts: Path,
    tmp_path: Path,
) -> None:
    case = cases[acquisition]
    out = artifacts / f"ohif-{acquisition}-{layout}"
    out.mkdir(parents=True, exist_ok=True)
    expected = {
        case.structures[label].name: case.structures[label].color_rgb for label in DEMO_LABELS
    }
    # A probe that reads pure black found a viewport OHIF had not painted yet (seen once on a
    # loaded 2-core machine: no segment colour and no CT grey there): the browser session is
    # run once more. Every colour is still checked against the catalog below.
    for _ in range(2):
        report = run_ohif(
            {
                "base": ohif,
                "study": case.study_instance_uid,
                "seg": case.series_descriptions[layout],
                "out": str(out),
                "views": _views(case),
            },
            tmp_path,
        )
        drawn: dict[str, tuple[int, int, int]] = {}
        page_x: dict[str, float] = {}
        for view in report["views"]:  # type: ignore[attr-defined]
            assert view["offPlaneMm"] < 0.5, view
            image = Image.open(view["file"])
            for probe in view["probes"]:
                drawn[probe["key"]] = _drawn(image, probe["pixel"])
                page_x[probe["key"]] = probe["pixel"][0]
        if (0, 0, 0) not in drawn.values():
            break
    wrong = {
        name: {
            "drawn": drawn[name],
            "catalog": colour,
            "looks like": _nearest(drawn[name], expected),
        }
        for name, colour in expected.items()
        if _distance(drawn[name], colour) > COLOUR_TOLERANCE
        or _nearest(drawn[name], expected) != name
    }
    assert not wrong, f"{layout} SEG of the {acquisition} series in OHIF: {wrong}"
    # The segments OHIF lists are the structures, no more (no 'Background' item as a segment).
    listed = sorted(s["label"] for s in report["segments"])  # type: ignore[attr-defined]
    assert listed == sorted(s.name.replace("_", " ") for s in case.structures.values())
    for left, right in LATERAL_PAIRS:
        assert page_x[left] > page_x[right], (
            f"{acquisition}: the patient's {left} is drawn left of {right} on the screen"
        )
