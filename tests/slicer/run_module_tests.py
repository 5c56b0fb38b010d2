"""Run the OmasIDC module's Test class with slicer-core; write one result per test as JSON.

Executed by ``tests/slicer/test_slicer_logic.py`` with the interpreter of ``.venv-slicer``
(slicer-core cannot live in the project's own venv: it brings its own VTK):

    .venv-slicer/bin/python tests/slicer/run_module_tests.py RESULTS.json [TEST_NAME ...]
"""

from __future__ import annotations

import json
import sys
import time
import traceback
import unittest
from pathlib import Path

MODULE_DIR = Path(__file__).resolve().parents[2] / "slicer" / "OmasIDC"


def main() -> int:
    """Run the tests named (all ``test_*`` methods by default); 0 when the runner finished."""
    out = Path(sys.argv[1])
    sys.path.insert(0, str(MODULE_DIR))
    import OmasIDC

    names = sys.argv[2:] or sorted(n for n in dir(OmasIDC.OmasIDCTest) if n.startswith("test_"))
    results: dict[str, dict[str, object]] = {}
    for name in names:
        result = unittest.TestResult()
        start = time.monotonic()
        OmasIDC.OmasIDCTest(name).run(result)
        seconds = round(time.monotonic() - start, 2)
        if result.errors or result.failures:
            (_, detail) = (result.errors or result.failures)[0]
            results[name] = {"status": "failed", "detail": detail, "seconds": seconds}
        elif result.skipped:
            results[name] = {"status": "skipped", "detail": result.skipped[0][1]}
        else:
            results[name] = {"status": "ok", "seconds": seconds}
        out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception:  # noqa: BLE001 - the import itself failed: report it to pytest
        traceback.print_exc()
        sys.exit(3)
