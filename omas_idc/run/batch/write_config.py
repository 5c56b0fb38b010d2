"""Write the configuration embedded in a Cloud Batch job to the VM's work disk.

The first runnable of each task runs this file's text with ``python -c`` in the job's image:
:func:`omas_idc.run.batch.render_job` reads it from the installed package and sends it inside
the job, so the task runs the writer of the omas-idc that rendered the job. It takes the TOML
text, its SHA-256 and the target path from ``OMAS_IDC_CONFIG_TOML``,
``OMAS_IDC_CONFIG_SHA256`` and ``OMAS_IDC_CONFIG_PATH`` and writes the file atomically (a
retried task on the same VM never sees half a file). It exits with 2 (the task fails at once,
without retries) if the text does not match its hash or the image's omas-idc cannot write it.
"""

from __future__ import annotations

import hashlib
import os
import sys

# omas-idc run's exit code for configuration errors, which Batch does not retry.
CONFIGURATION_EXIT_CODE = 2


def main() -> int:
    """Check and write the embedded configuration; return the exit code."""
    text = os.environ["OMAS_IDC_CONFIG_TOML"]
    if hashlib.sha256(text.encode()).hexdigest() != os.environ["OMAS_IDC_CONFIG_SHA256"]:
        sys.stderr.write("omas-idc: embedded configuration and SHA-256 differ\n")
        return CONFIGURATION_EXIT_CODE
    try:
        from omas_idc.atomic import atomic_write_text
    except ImportError as err:
        sys.stderr.write(
            f"omas-idc: the image's omas-idc is older than the one that rendered the job ({err});"
            " rebuild the image from the same omas-idc version\n"
        )
        return CONFIGURATION_EXIT_CODE
    atomic_write_text(os.environ["OMAS_IDC_CONFIG_PATH"], text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
