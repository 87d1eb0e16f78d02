#!/usr/bin/env python3
"""pi with NumPy: vectorised draws in chunks on every MPI rank, hit counts summed
as integers. The strongest plain-Python peer for `pi-mpi`.

    mpiexec -n 2 .venv/bin/python benches/python/pi_numpy.py 1e9
Prints one JSON line: samples, ranks, seconds, samples_per_second.
"""
import json
import math
import os
import sys
import time

# One BLAS/OpenMP thread per rank, like `pi-mpi --threads 1`.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

CHUNK = 1 << 22


def main():
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    total = int(float(sys.argv[1])) if len(sys.argv) > 1 else 100_000_000
    n = total // size + (1 if rank < total % size else 0)
    rng = np.random.default_rng([1234, rank])
    comm.Barrier()
    t0 = time.time()
    hits = 0
    left = n
    while left > 0:
        m = min(CHUNK, left)
        x = rng.random(m)
        y = rng.random(m)
        hits += int(np.count_nonzero(x * x + y * y < 1.0))
        left -= m
    hits = comm.reduce(hits, op=MPI.SUM, root=0)
    comm.Barrier()
    elapsed = time.time() - t0
    if rank == 0:
        pi = 4.0 * hits / total
        print(json.dumps({"peer": "python-numpy", "samples": total, "ranks": size, "seconds": elapsed,
                          "samples_per_second": total / elapsed, "estimate": pi, "error": abs(pi - math.pi)}))


if __name__ == "__main__":
    main()
