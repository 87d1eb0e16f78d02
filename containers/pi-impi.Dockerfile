# pi-mpi on TACC's Intel MPI base, which runs on InfiniBand and Omni-Path
# (Frontera, Stampede). From the repository root:
#   docker build -f containers/pi-impi.Dockerfile -t docker.io/$DOCKER_USER/hpcml-pi-impi:0.1.0 .
# Pin the base by digest for a reproducible build: --build-arg BASE=tacc/...@sha256:...
ARG BASE=tacc/tacc-ubuntu18-impi19.0.7-common:latest

# Built on the base itself, so pi-mpi links the Intel MPI it will run with.
FROM ${BASE} AS build
# The base loads Intel MPI's mpivars.sh through BASH_ENV, which only bash reads.
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
# Like the base's own hello-world check: two ranks through the image's mpirun
# (shared memory only: a build host has no fabric).
RUN I_MPI_FABRICS=shm mpirun -n 2 pi-mpi 1e6 | grep '^Final Estimate'
# The base's convention: /entry.sh sets up Intel MPI, then runs the command.
# Under Apptainer this needs `apptainer run`, which calls it; `exec` does not.
ENTRYPOINT ["/entry.sh"]
CMD ["pi-mpi", "10000000"]
