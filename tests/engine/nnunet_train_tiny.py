"""Train nnU-Net's own ``nnUNetTrainer`` for one short epoch on a tiny made-up dataset (CPU).

Run as a script in a fresh process (``python nnunet_train_tiny.py ROOT``): nnU-Net reads its
folders from the environment when ``nnunetv2.paths`` is imported and changes process-wide
torch settings, so the test gives it a process of its own with ``nnUNet_raw``,
``nnUNet_preprocessed`` and ``nnUNet_results`` under ``ROOT``. The dataset is written, then
fingerprinted, planned and preprocessed with nnU-Net's planning API, and the trainer (made by
nnU-Net's ``get_trainer_from_args``) runs its own ``run_training``, which writes
``fold_all/checkpoint_final.pth`` with ``save_checkpoint``. Prints the result folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DATASET_ID = 987
DATASET = f"Dataset{DATASET_ID}_TinyTrain"


def _write_dataset(raw: Path, cases: int = 4, size: int = 24) -> None:
    import json

    import nibabel as nib
    import numpy as np

    folder = raw / DATASET
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for i in range(cases):
        label = np.zeros((size, size, size), dtype=np.uint8)
        lo = 4 + i
        label[lo : lo + 10, lo : lo + 10, lo : lo + 10] = 1
        label[lo + 3 : lo + 7, lo + 3 : lo + 7, lo + 3 : lo + 7] = 2
        image = rng.normal(-800, 20, label.shape) + 900.0 * (label == 1) + 1500.0 * (label == 2)
        name = f"tiny_{i:03d}"
        nib.save(
            nib.Nifti1Image(image.astype(np.float32), affine),
            folder / "imagesTr" / f"{name}_0000.nii.gz",
        )
        nib.save(nib.Nifti1Image(label, affine), folder / "labelsTr" / f"{name}.nii.gz")
    (folder / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "organ": 1, "core": 2},
                "numTraining": cases,
                "file_ending": ".nii.gz",
            }
        )
    )


def main(root: Path) -> Path:
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[name] = str(root / name)
        (root / name).mkdir(parents=True, exist_ok=True)
    os.environ["nnUNet_n_proc_DA"] = "1"  # planning sets torch's threads from it
    os.environ["nnUNet_compile"] = "false"
    _write_dataset(root / "nnUNet_raw")

    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.run.run_training import get_trainer_from_args

    torch.set_num_threads(1)
    extract_fingerprints([DATASET_ID], num_processes=1, check_dataset_integrity=True)
    plans_name = plan_experiments([DATASET_ID])
    preprocess([DATASET_ID], plans_name, configurations=("3d_fullres",), num_processes=(1,))
    os.environ["nnUNet_n_proc_DA"] = "0"  # data augmentation in this process, no workers
    trainer = get_trainer_from_args(
        str(DATASET_ID),
        "3d_fullres",
        "all",
        "nnUNetTrainer",
        plans_name,
        device=torch.device("cpu"),
    )
    trainer.num_epochs = 1
    trainer.num_iterations_per_epoch = 2
    trainer.num_val_iterations_per_epoch = 1
    trainer.run_training()
    return Path(trainer.output_folder).parent


if __name__ == "__main__":
    print(main(Path(sys.argv[1])))
