"""Helpers of the OmasIDC Slicer module: the Logic's parts, importable without Qt.

- :mod:`.terminology`: catalog structures -> Slicer terminology entries and a ``.term.json``
  context (pure Python);
- :mod:`.commands`: the ``omas-idc`` command lines a run is made of (pure Python);
- :mod:`.jobs`: those commands run one after the other in a subprocess, polled without blocking,
  cancellable, failures reported as omas-idc's classified error line (pure Python);
- :mod:`.scene`: MRML nodes from and to omas-idc's files (needs ``slicer``; slicer-core is
  enough);
- :mod:`.install`: omas-idc installed into Slicer's Python on first use.
"""
