#!/usr/bin/env python3
"""The tutorial's pi-mpi.py algorithm: a pure-Python loop over random() on every
MPI rank, per-rank ratios averaged. Side-by-side peer for `pi-mpi`.

    mpiexec -n 2 .venv/bin/python benches/python/pi_loop.py 10000000
Prints one JSON line: samples, ranks, seconds, samples_per_second.
"""
import json
import math
import sys
import time
from random import random, seed

from mpi4py import MPI


def inside(_):
    x, y = random(), random()
    return x * x + y * y < 1.0


def main():
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    total = int(float(sys.argv[1])) if len(sys.argv) > 1 else 10_000_000
    n = total // size + (1 if rank < total % size else 0)
    seed(1234 + rank)
    comm.Barrier()
    t0 = time.time()
    count = sum(1 for _ in range(n) if inside(_))
    local_pi = 4.0 * count / n
    pi = comm.reduce(local_pi, op=MPI.SUM, root=0)
    comm.Barrier()
    elapsed = time.time() - t0
    if rank == 0:
        pi /= size
        print(json.dumps({"peer": "python-loop", "samples": total, "ranks": size, "seconds": elapsed,
                          "samples_per_second": total / elapsed, "estimate": pi, "error": abs(pi - math.pi)}))


if __name__ == "__main__":
    main()
