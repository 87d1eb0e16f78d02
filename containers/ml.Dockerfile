# All four binaries (pi-mpi, matmul-scaling, mnist-cnn, bert-classifier) on a
# CUDA runtime base, with MPICH, libtorch from PyPI's torch wheel, and the
# offline model and data. From the repository root:
#   docker build -f containers/ml.Dockerfile -t docker.io/$DOCKER_USER/hpcml-ml:0.1.0 .
# Multi-arch (amd64 for Frontera and Lonestar, arm64 for Vista):
#   docker buildx build --platform linux/amd64,linux/arm64 -f containers/ml.Dockerfile \
#     -t docker.io/$DOCKER_USER/hpcml-ml:0.1.0 --push .
# Ubuntu 24.04 (glibc 2.39): torch 2.13's libtorch needs glibc >= 2.28, which
# the TACC ubuntu18 bases (2.27) lack. CUDA 13 needs an NVIDIA driver >= 580.
ARG CUDA_BASE=nvidia/cuda:13.0.0-runtime-ubuntu24.04

FROM ${CUDA_BASE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_NO_CACHE_DIR=1
COPY containers/install.sh containers/requirements.txt containers/requirements-data.txt /opt/hpcml/
# The same steps as scripts/setup.sh, with the venv at a fixed path: the
# binaries carry an rpath to its libtorch, so the final stage keeps that path.
RUN /opt/hpcml/install.sh system \
    && /opt/hpcml/install.sh rust \
    && /opt/hpcml/install.sh venv /opt/hpcml/venv /opt/hpcml/requirements.txt \
       --no-deps /opt/hpcml/requirements-data.txt
ENV PATH=/root/.cargo/bin:${PATH}
WORKDIR /src
COPY . .
# Binaries load MPICH by the soname Intel MPI and MVAPICH2 share (libmpi.so.12),
# so a host's MPI can stand in for it (see README.md, "Containers and Slurm").
RUN /opt/hpcml/install.sh cargo-config /src /opt/hpcml/venv \
    && cargo build --release --locked --bins \
    && mkdir -p /opt/hpcml/bin \
    && find target/release -maxdepth 1 -type f -executable -exec cp {} /opt/hpcml/bin/ \; \
    && /opt/hpcml/install.sh mpi-abi /opt/hpcml/bin/*

FROM ${CUDA_BASE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY containers/install.sh /opt/hpcml/install.sh
# A fixed uid above the base's own users (ubuntu is 1000); /runs is writable by
# anyone, so `docker run --user "$(id -u):$(id -g)"` works too.
RUN INSTALL_CLEAN=1 /opt/hpcml/install.sh runtime \
    && /opt/hpcml/install.sh mpi-abi \
    && groupadd --gid 10001 hpcml \
    && useradd --create-home --uid 10001 --gid 10001 --shell /bin/bash hpcml \
    && mkdir -m 1777 /runs
COPY --from=build /opt/hpcml/venv /opt/hpcml/venv
COPY --from=build /opt/hpcml/bin /opt/hpcml/bin
ENV PATH=/opt/hpcml/bin:/opt/hpcml/venv/bin:${PATH}
USER 10001:10001
WORKDIR /runs
# Fails the build unless every library resolves (libtorch through the rpath,
# MPICH as libmpi.so.12) and two ranks agree.
RUN ! ldd /opt/hpcml/bin/* | grep 'not found' \
    && ldd /opt/hpcml/bin/pi-mpi | grep -q 'libmpi\.so\.12 => ' \
    && mpiexec -n 2 pi-mpi 1e6 | grep '^Final Estimate'
CMD ["pi-mpi", "10000000"]
