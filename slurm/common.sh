# shellcheck shell=bash
# What the sbatch templates share; they source it, nobody runs it.
#
# Environment the templates read (all optional):
#   HPCML_SIF           an Apptainer image (.sif, or docker://...): run the binaries
#                       inside it with `apptainer run [--nv]`; unset: native binaries
#   HPCML_BIN_DIR       where the native binaries are; unset: PATH, then this
#                       checkout's target/release
#   HPCML_OUT           the run's output directory; unset:
#                       ${SCRATCH:-submit directory}/hpcml-runs/NAME-JOBID
#   HPCML_LAUNCHER      ibrun | srun | mpiexec; unset: the first one that exists
#                       (srun and ibrun only inside a Slurm job)
#   HPCML_SRUN_MPI      srun's --mpi plugin (pmi2: MPICH, Intel MPI and MVAPICH2
#                       all speak it, and without it srun starts N 1-rank jobs)
#   HPCML_RANKS         ranks for mpiexec outside Slurm (1)
#   HPCML_DEVICE        GPU templates: cuda or cpu; unset: cuda when the node shows a GPU
#   HPCML_MAX_RESTARTS  trainers: how often a job may requeue itself (20)

hpcml_log() { echo "[hpcml] $*" >&2; }
hpcml_die() { echo "[hpcml] error: $*" >&2; exit 2; }

# MVAPICH2 pins each rank to one core by default, which would squeeze a rank's
# worker threads onto that core; our ranks run one thread per core they own.
export MV2_ENABLE_AFFINITY=${MV2_ENABLE_AFFINITY:-0}

# hpcml_setup NAME [gpu]: output directory, launcher, native or container, GPUs.
hpcml_setup() {
  HPCML_NAME=$1
  HPCML_GPU=${2:-}
  # Relative paths mean the submit directory, which the job starts in.
  case ${HPCML_SIF:-} in '' | /* | *://*) ;; *) HPCML_SIF=$PWD/$HPCML_SIF ;; esac
  case ${HPCML_BIN_DIR:-} in '' | /*) ;; *) HPCML_BIN_DIR=$PWD/$HPCML_BIN_DIR ;; esac
  local base=${SCRATCH:-${SLURM_SUBMIT_DIR:-$PWD}}
  HPCML_OUT=${HPCML_OUT:-$base/hpcml-runs/$HPCML_NAME-${SLURM_JOB_ID:-$(date +%Y%m%d-%H%M%S)}}
  mkdir -p "$HPCML_OUT"
  cd "$HPCML_OUT" || hpcml_die "cannot enter $HPCML_OUT"
  HPCML_OUT=$PWD
  export HPCML_OUT

  hpcml_pick_launcher
  hpcml_pick_runtime

  hpcml_log "job ${SLURM_JOB_ID:-(not in Slurm)} ${SLURM_JOB_NAME:-$HPCML_NAME}: ${SLURM_NTASKS:-${HPCML_RANKS:-1}} rank(s) on ${SLURM_JOB_NUM_NODES:-1} node(s) (${SLURM_JOB_NODELIST:-$(hostname -s)}), restart ${SLURM_RESTART_COUNT:-0}"
  hpcml_log "launcher: ${HPCML_LAUNCH[*]}"
  hpcml_log "runs: ${HPCML_WRAP[*]:-native binaries from ${HPCML_BIN_DIR:-PATH, else target/release of this checkout}}"
  hpcml_log "output: $HPCML_OUT"
  # After the job's own lines, so the log starts with what ran where.
  if [ "$HPCML_GPU" = gpu ]; then hpcml_map_gpus; fi
}

hpcml_pick_launcher() {
  local l=${HPCML_LAUNCHER:-}
  if [ -z "$l" ]; then
    if [ -n "${SLURM_JOB_ID:-}" ] && command -v ibrun >/dev/null 2>&1; then l=ibrun
    elif [ -n "${SLURM_JOB_ID:-}" ] && command -v srun >/dev/null 2>&1; then l=srun
    else l=mpiexec; fi
  fi
  case $l in
    # ibrun reads the task layout from Slurm and sets up the site's MPI itself.
    ibrun) HPCML_LAUNCH=(ibrun) ;;
    srun) HPCML_LAUNCH=(srun "--mpi=${HPCML_SRUN_MPI:-pmi2}") ;;
    mpiexec) HPCML_LAUNCH=(mpiexec -n "${SLURM_NTASKS:-${HPCML_RANKS:-1}}") ;;
    *) hpcml_die "HPCML_LAUNCHER=$l: use ibrun, srun or mpiexec" ;;
  esac
  command -v "${HPCML_LAUNCH[0]}" >/dev/null 2>&1 || hpcml_die "launcher ${HPCML_LAUNCH[0]} not found on this node"
  HPCML_LAUNCHER=$l
}

hpcml_pick_runtime() {
  HPCML_WRAP=()
  if [ -n "${HPCML_SIF:-}" ]; then
    # TACC puts Apptainer behind a module; elsewhere it is simply installed.
    if type module >/dev/null 2>&1 && ! command -v apptainer >/dev/null 2>&1; then
      module load tacc-apptainer || hpcml_log "module load tacc-apptainer failed; trying apptainer from PATH"
    fi
    local tool
    tool=$(command -v apptainer || command -v singularity || true)
    [ -n "$tool" ] || hpcml_die "HPCML_SIF is set but neither apptainer nor singularity is on PATH"
    case $HPCML_SIF in
      *://*) ;;
      *) [ -r "$HPCML_SIF" ] || hpcml_die "HPCML_SIF=$HPCML_SIF: no such image (build or pull it first, see docs)" ;;
    esac
    # `run`, not `exec`: the TACC Intel MPI images set up MPI in their entry script.
    HPCML_WRAP=("$(basename "$tool")" run)
    if [ "$HPCML_GPU" = gpu ]; then HPCML_WRAP+=(--nv); fi
    HPCML_WRAP+=(--bind "$HPCML_OUT" "$HPCML_SIF")
  fi
}

# The command that runs binary $1 on every rank.
hpcml_cmd() {
  local bin=$1 path
  if [ ${#HPCML_WRAP[@]} -gt 0 ]; then
    HPCML_CMD=("${HPCML_LAUNCH[@]}" "${HPCML_WRAP[@]}" "$bin")
    return
  fi
  if [ -n "${HPCML_BIN_DIR:-}" ]; then
    path=$HPCML_BIN_DIR/$bin
  else
    path=$(command -v "$bin" || true)
    if [ -z "$path" ] && [ -x "$HPCML_SLURM_DIR/../target/release/$bin" ]; then
      path=$(cd "$HPCML_SLURM_DIR/../target/release" && pwd)/$bin
    fi
  fi
  if [ -z "$path" ] || [ ! -x "$path" ]; then
    hpcml_die "$bin not found${HPCML_BIN_DIR:+ in HPCML_BIN_DIR=$HPCML_BIN_DIR}: put it on PATH, set HPCML_BIN_DIR, or set HPCML_SIF to an image"
  fi
  HPCML_CMD=("${HPCML_LAUNCH[@]}" "$path")
}

hpcml_gpus_on_node() {
  if [ -n "${SLURM_GPUS_ON_NODE:-}" ]; then echo "$SLURM_GPUS_ON_NODE"
  elif [ -n "${CUDA_VISIBLE_DEVICES+set}" ] && [ "$CUDA_VISIBLE_DEVICES" != NoDevFiles ]; then
    # Set but empty hides every GPU.
    awk -F, '{print NF}' <<< "$CUDA_VISIBLE_DEVICES"
  elif command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true
  else echo 0; fi
}

hpcml_ranks_per_node() {
  if [ -n "${SLURM_NTASKS_PER_NODE:-}" ]; then echo "$SLURM_NTASKS_PER_NODE"
  elif [ -n "${SLURM_TASKS_PER_NODE:-}" ]; then echo "${SLURM_TASKS_PER_NODE%%[(,]*}"   # "4(x2)" or "3,2"
  else echo "${HPCML_RANKS:-1}"; fi
}

# Every rank takes GPU (local rank % GPUs on its node), in the binaries; here we
# check that the job has one rank per GPU and choose the device.
hpcml_map_gpus() {
  local gpus ranks
  gpus=$(hpcml_gpus_on_node)
  ranks=$(hpcml_ranks_per_node)
  if [ "$gpus" -eq 0 ]; then
    HPCML_DEVICE=${HPCML_DEVICE:-cpu}
    hpcml_log "no GPU visible on $(hostname -s): device $HPCML_DEVICE"
    return
  fi
  HPCML_DEVICE=${HPCML_DEVICE:-cuda}
  if [ "$ranks" -eq "$gpus" ]; then
    hpcml_log "one rank per GPU: local rank i uses GPU i of $gpus"
  elif [ "$ranks" -gt "$gpus" ]; then
    hpcml_log "warning: $ranks ranks per node share $gpus GPU(s) (local rank i uses GPU i % $gpus); for one rank per GPU submit with --ntasks-per-node=$gpus"
  else
    hpcml_log "warning: $((gpus - ranks)) of $gpus GPUs per node stay idle; for one rank per GPU submit with --ntasks-per-node=$gpus"
  fi
}

# hpcml_run BIN ARGS...: runs BIN on every rank and returns its exit status.
hpcml_run() {
  local status=0
  hpcml_cmd "$1"; shift
  hpcml_log "\$ ${HPCML_CMD[*]} $*"
  "${HPCML_CMD[@]}" "$@" || status=$?
  hpcml_log "exit status $status"
  return "$status"
}

# hpcml_run_trainer BIN ARGS...: like hpcml_run, for trainers that checkpoint
# and exit 0 on SIGUSR1/SIGTERM. The job's --signal=B:USR1@SECS reaches only
# this shell: it forwards USR1 to the job step, waits for the checkpoint, and
# requeues the job, which then resumes (ARGS carry --resume) in the same HPCML_OUT.
# TERM (scancel, preemption, the time limit itself) reaches the step from Slurm
# directly; the shell only waits for the step's checkpoint and does not requeue.
hpcml_run_trainer() {
  local status
  hpcml_cmd "$1"; shift
  hpcml_signals=
  trap 'hpcml_on_signal USR1' USR1
  trap 'hpcml_on_signal TERM' TERM
  hpcml_log "\$ ${HPCML_CMD[*]} $*"
  # In the background: bash runs traps only between commands, and `wait` is the
  # one command that a signal interrupts.
  "${HPCML_CMD[@]}" "$@" &
  hpcml_step=$!
  while :; do
    hpcml_interrupted=0
    status=0
    wait "$hpcml_step" || status=$?
    [ "$hpcml_interrupted" = 1 ] || break
    # A trap cut the wait short; waiting again returns the step's own status
    # once it has ended.
  done
  trap - USR1 TERM
  hpcml_log "exit status $status${hpcml_signals:+ after SIG${hpcml_signals// / and SIG}}"
  hpcml_after_step "$status" "$hpcml_signals"
}

hpcml_on_signal() {
  hpcml_interrupted=1
  case " $hpcml_signals " in *" $1 "*) return 0 ;; esac
  hpcml_signals=${hpcml_signals:+$hpcml_signals }$1
  if [ "$1" = TERM ] && [ -n "${SLURM_JOB_ID:-}" ]; then
    hpcml_log "received SIGTERM: Slurm signals the job step itself; waiting for its checkpoint"
    return 0
  fi
  hpcml_log "received SIG$1: forwarding it to the job step, which checkpoints and exits"
  if [ -n "${SLURM_JOB_ID:-}" ] && [ "$HPCML_LAUNCHER" != mpiexec ]; then
    # Every task of every step on every node, whatever ibrun or srun started,
    # and not this shell (that needs --batch or --full).
    scancel --signal="$1" "$SLURM_JOB_ID" || hpcml_log "scancel --signal=$1 failed"
  else
    # mpiexec (hydra) and srun pass the signal on to their ranks.
    kill -s "$1" "$hpcml_step" 2>/dev/null || true
  fi
}

# hpcml_after_step STATUS SIGNALS: ends the batch script. After USR1 alone and a
# clean exit (a checkpoint was written), requeue the job; after TERM (scancel,
# the time limit) never; otherwise exit with STATUS.
hpcml_after_step() {
  local status=$1 signals=${2:-} restarts=${SLURM_RESTART_COUNT:-0} max=${HPCML_MAX_RESTARTS:-20}
  if [ "$signals" != USR1 ] || [ "$status" != 0 ]; then
    case $signals in
      *TERM*) hpcml_log "not requeueing after SIGTERM (scancel, preemption or the time limit)" ;;
      USR1) hpcml_log "the step failed after SIGUSR1: not requeueing" ;;
    esac
    exit "$status"
  fi
  if [ -z "${SLURM_JOB_ID:-}" ]; then
    hpcml_log "checkpoint written; run again with HPCML_OUT=$HPCML_OUT to resume"
    exit 0
  fi
  if [ "$restarts" -ge "$max" ]; then
    hpcml_log "checkpoint written; not requeueing: $restarts restarts reached HPCML_MAX_RESTARTS=$max"
    exit 0
  fi
  hpcml_requeue
}

# Puts this job back in the queue; it restarts with SLURM_RESTART_COUNT+1, the
# same job id and so the same HPCML_OUT.
hpcml_requeue() {
  hpcml_log "requeueing job $SLURM_JOB_ID (restart $(( ${SLURM_RESTART_COUNT:-0} + 1 ))); it resumes from $HPCML_OUT"
  # slurmctld ends this run right away (SIGTERM to this shell): nothing may follow.
  trap '' TERM
  scontrol requeue "$SLURM_JOB_ID" || hpcml_die "scontrol requeue $SLURM_JOB_ID failed (was the job submitted with --requeue?)"
  exit 0
}
