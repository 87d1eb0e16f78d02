# pi-mpi on TACC's MVAPICH2 InfiniBand base (Frontera, Lonestar, and most
# InfiniBand clusters). From the repository root:
#   docker build -f containers/pi-mvapich2.Dockerfile -t docker.io/$DOCKER_USER/hpcml-pi-mvapich2:0.1.0 .
# Pin the base by digest for a reproducible build: --build-arg BASE=tacc/...@sha256:...
ARG BASE=tacc/tacc-ubuntu18-mvapich2.3-ib:latest

# Built on the base itself, so pi-mpi links the MVAPICH2 it will run with.
FROM ${BASE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY containers/install.sh /opt/hpcml/install.sh
RUN /opt/hpcml/install.sh build-tools && /opt/hpcml/install.sh rust
ENV PATH=/root/.cargo/bin:${PATH}
WORKDIR /src
COPY . .
# No torch feature: pi-mpi alone, without libtorch (glibc 2.27 here is too old for it).
RUN cargo build --release --locked --no-default-features --bin pi-mpi \
    && install -D -m 0755 target/release/pi-mpi /opt/hpcml/bin/pi-mpi

# The final stage is the base plus one binary: no Rust, no build tools.
FROM ${BASE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=build /opt/hpcml/bin/pi-mpi /usr/local/bin/pi-mpi
# MVAPICH2 lives in /usr/local/lib; refresh the loader's cache so pi-mpi finds
# libmpi.so.12 without LD_LIBRARY_PATH, then run two ranks like the base's own
# check does (CMA off: a build container may not allow cross-memory attach).
RUN ldconfig \
    && MV2_SMP_USE_CMA=0 MV2_ENABLE_AFFINITY=0 mpirun -n 2 pi-mpi 1e6 | grep '^Final Estimate'
# The base has no entry script: Docker and `apptainer run` start the command as given.
CMD ["pi-mpi", "10000000"]
