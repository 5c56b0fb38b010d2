# omas-idc on a GPU host or Google Cloud Batch: CUDA runtime, PyTorch, s5cmd, entrypoint omas-idc.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ARG S5CMD_VERSION=2.3.0
RUN apt-get update && apt-get install -y --no-install-recommends curl ca-certificates \
    && curl -fsSL "https://github.com/peak/s5cmd/releases/download/v${S5CMD_VERSION}/s5cmd_${S5CMD_VERSION}_Linux-64bit.tar.gz" \
       | tar -xz -C /usr/local/bin s5cmd \
    && apt-get purge -y curl && apt-get autoremove -y && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/omas-idc
COPY pyproject.toml README.md constraints.txt ./
COPY omas_idc ./omas_idc
COPY dicom_templates ./dicom_templates
COPY pipelines ./pipelines
# The base image brings its own CUDA build of torch; pyproject only asks for torch>=2.4.
RUN pip install --no-cache-dir . && omas-idc --version

WORKDIR /work
ENTRYPOINT ["omas-idc"]
CMD ["--help"]
