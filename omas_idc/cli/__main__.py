"""``python -m omas_idc.cli``: the same as the ``omas-idc`` script."""

from __future__ import annotations

from omas_idc.cli import main

main()
