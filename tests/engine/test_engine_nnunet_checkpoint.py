"""A checkpoint written by nnU-Net's own trainer loads through the weights-only loader.

nnU-Net's ``nnUNetTrainer`` is trained for one short epoch on a tiny dataset, on the CPU,
through nnU-Net's planning, preprocessing and training API (``nnunet_train_tiny.py``, in a
process of its own: nnU-Net reads its folders from the environment at import). Its
``checkpoint_final.pth`` (optimizer state, logging lists of numpy scalars, ``_best_ema``,
``init_args``...) must load with ``torch.load(weights_only=True)`` and the numpy allowlist,
and the same checkpoint carrying any other object must still be refused, without running it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("nnunetv2")
torch = pytest.importorskip("torch")

from omas_idc.engine.checkpoint import NNUNET_CHECKPOINT_GLOBALS, load_checkpoint  # noqa: E402
from omas_idc.engine.model import load_model  # noqa: E402
from omas_idc.errors import ModelError  # noqa: E402

SCRIPT = Path(__file__).with_name("nnunet_train_tiny.py")


class _Payload:
    """Unpickling this runs code: it creates the file ``path`` (what a hostile checkpoint does)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.path,))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The result folder of an ``nnUNetTrainer`` trained by nnU-Net for one epoch."""
    root = tmp_path_factory.mktemp("nnunet")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    folder = Path(done.stdout.strip().splitlines()[-1])
    assert (folder / "fold_all" / "checkpoint_final.pth").is_file()
    return folder


def _raw(path: Path) -> dict[str, object]:
    with torch.serialization.safe_globals(list(NNUNET_CHECKPOINT_GLOBALS)):
        raw = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(raw, dict)
    return raw


@pytest.mark.slow
def test_nnunet_trainer_checkpoint_loads_weights_only(trained: Path) -> None:
    path = trained / "fold_all" / "checkpoint_final.pth"
    raw = _raw(path)
    # what nnUNetTrainer.save_checkpoint writes, besides the weights
    assert {"optimizer_state", "logging", "_best_ema", "init_args", "current_epoch"} <= set(raw)
    checkpoint = load_checkpoint(path)
    assert checkpoint.trainer_name == "nnUNetTrainer"
    assert checkpoint.configuration == "3d_fullres"
    assert checkpoint.inference_allowed_mirroring_axes == (0, 1, 2)
    model = load_model(trained, device="cpu")
    (network,) = model.tasks[0].networks
    state = network.state_dict()
    assert set(state) == set(checkpoint.network_weights)
    for name, value in checkpoint.network_weights.items():
        assert torch.equal(state[name], value), name


@pytest.mark.slow
def test_nnunet_trainer_checkpoint_with_any_other_object_is_refused(
    trained: Path, tmp_path: Path
) -> None:
    raw = _raw(trained / "fold_all" / "checkpoint_final.pth")
    marker = tmp_path / "code-ran"
    raw["logging"] = {"hook": _Payload(marker)}
    hostile = tmp_path / "checkpoint_final.pth"
    torch.save(raw, hostile)
    with pytest.raises(ModelError, match="refusing to load checkpoint"):
        load_checkpoint(hostile)
    assert not marker.exists()
