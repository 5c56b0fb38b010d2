"""How many cores a CPU run gives torch: the rest of the pipeline needs one where there are many."""

from __future__ import annotations

import pytest

from omas_idc.run.engine_setup import cpu_engine_threads


@pytest.mark.parametrize(("cpus", "threads"), [(1, 1), (2, 2), (3, 3), (4, 3), (16, 15)])
def test_cpu_runs_leave_a_core_to_the_other_stages_only_on_larger_machines(
    cpus: int, threads: int
) -> None:
    assert cpu_engine_threads(cpus) == threads
