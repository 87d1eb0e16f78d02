#!/usr/bin/env bash
# A real single-node Slurm on localhost, for the test suite and for trying the
# sbatch templates on a laptop: its own munged, slurmctld and slurmd, all state
# under one directory, no systemd and no cgroups. Needs root (slurmd does).
#
#   local-slurm.sh up                  install if missing, configure, start, wait until the node is idle
#   local-slurm.sh down                cancel jobs, stop the three daemons (TERM, then KILL), bounded
#   local-slurm.sh status              the daemons' pids and the node's state; exit 1 if one is down
#   local-slurm.sh env                 prints `export SLURM_CONF=...`, for eval
#   local-slurm.sh wait JOBID [SECS]   poll the job every second until it ends (bounded);
#                                      prints its final state and exit code; exit 0 if COMPLETED
#
# Environment:
#   LS_ROOT     where config, state, logs and sockets live   (/tmp/hpcml-slurm)
#   LS_CPUS     CPUs the node offers; more than the cores     (max(cores, 2))
#               oversubscribes, so 2-rank jobs run on 1 core
#   LS_TIMEOUT  seconds to wait for a daemon or the node      (60)
#   LS_OWNER    a pid: when that process is gone, `down` runs by itself, so a
#               test killed before it could clean up leaves no daemons behind
#
# Several instances can run side by side (different LS_ROOT): each picks free
# ports when it starts. What this script learned the hard way:
#   - MpiDefault=none, as on many clusters: `srun -n 2` then silently runs two
#     1-rank programs; MPI jobs must ask for `srun --mpi=pmi2` (the templates do).
#   - `sbatch --wait` polls after 2, 10 and 42 s, then every 32 s, and never
#     times out: `wait` polls every second, with a limit.
#   - A request larger than the node stays PENDING forever unless
#     EnforcePartLimits=ALL makes sbatch refuse it at once.
#   - munged wants its socket directory world-searchable (0755).
set -euo pipefail
# munged, slurmctld and slurmd live in sbin, which some shells leave off PATH.
export PATH=$PATH:/usr/sbin:/sbin

LS_ROOT=${LS_ROOT:-/tmp/hpcml-slurm}
LS_TIMEOUT=${LS_TIMEOUT:-60}
cores=$(nproc)
LS_CPUS=${LS_CPUS:-$(( cores > 2 ? cores : 2 ))}
node=$(hostname -s)
root_dir=$(cd "$(dirname "$0")/.." && pwd)

conf=$LS_ROOT/etc/slurm.conf
run=$LS_ROOT/run
logs=$LS_ROOT/log
munge_dir=$LS_ROOT/munge
sock=$run/munge.socket
export SLURM_CONF=$conf

log() { echo "[local-slurm] $*" >&2; }
die() { echo "[local-slurm] error: $*" >&2; exit 1; }

dump_logs() {
  local f
  for f in "$munge_dir/munged.log" "$logs/slurmctld.log" "$logs/slurmd.log"; do
    if [ -f "$f" ]; then echo "----- last lines of $f" >&2; tail -n 20 "$f" >&2; fi
  done
}

# The pid in NAME's pid file, if that process is still NAME (pids get reused).
pid_of() {
  local pf=$run/$1.pid pid exe
  [ -s "$pf" ] || return 1
  pid=$(tr -dc '0-9' < "$pf")
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  exe=$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null || true)")
  # Debian installs slurmd and slurmctld as *-wlm behind alternatives.
  [ "$exe" = "$1" ] || [ "$exe" = "$1-wlm" ] || return 1
  echo "$pid"
}

until_ok() {
  local what=$1 t0=$SECONDS; shift
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS - t0 >= LS_TIMEOUT )); then dump_logs; die "$what: not ready after ${LS_TIMEOUT}s"; fi
    sleep 0.5
  done
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Two consecutive free ports, from a start that differs between instances.
free_ports() {
  local p=$(( 20000 + (RANDOM % 2000) * 2 )) tries=0
  while port_busy "$p" || port_busy $((p + 1)); do
    p=$((p + 2)); tries=$((tries + 1))
    [ "$tries" -lt 200 ] || die "no two free ports found"
  done
  echo "$p"
}

write_conf() {
  local port mem topo=() over=() hw
  port=$(free_ports)
  mem=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) * 9 / 10 / 1024 ))
  if [ "$LS_CPUS" -gt "$cores" ]; then
    # Offer more CPUs than exist: slurmd must believe the config, not the hardware.
    over=("SlurmdParameters=config_overrides")
  else
    # Otherwise describe the real sockets and cores, or slurmd drains the node
    # for "reconfigured socket/core boundaries".
    hw=$(slurmd -C 2>/dev/null | head -n1 || true)
    if [[ $hw =~ CPUs=([0-9]+).*(Boards=[0-9]+\ SocketsPerBoard=[0-9]+\ CoresPerSocket=[0-9]+\ ThreadsPerCore=[0-9]+) ]] \
      && [ "${BASH_REMATCH[1]}" = "$LS_CPUS" ]; then
      read -r -a topo <<< "${BASH_REMATCH[2]}"
    fi
  fi
  mkdir -p "$LS_ROOT/etc" "$run" "$logs" "$munge_dir" "$LS_ROOT/state/ctld" "$LS_ROOT/state/d"
  chmod 755 "$LS_ROOT" "$run"
  chmod 700 "$munge_dir"
  cat > "$conf.tmp" <<EOF
# written by scripts/local-slurm.sh
ClusterName=hpcml
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job waits out cred_expire (default 120 s) before it can start again.
AuthInfo=socket=$sock,cred_expire=5
StateSaveLocation=$LS_ROOT/state/ctld
SlurmdSpoolDir=$LS_ROOT/state/d
SlurmctldPidFile=$run/slurmctld.pid
SlurmdPidFile=$run/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Look at pending jobs every second: a requeued job becomes eligible between
# the events that otherwise trigger scheduling.
SchedulerParameters=sched_interval=1,bf_interval=1
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
MinJobAge=3600
EnforcePartLimits=ALL
${over[*]:-}
NodeName=$node NodeAddr=127.0.0.1 CPUs=$LS_CPUS ${topo[*]:-} RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=normal Nodes=ALL Default=NO MaxTime=INFINITE State=UP
EOF
  mv "$conf.tmp" "$conf"
}

munge_ok() { munge -S "$sock" -n < /dev/null | unmunge -S "$sock"; }
# Matched on captured output: `| grep -q` under pipefail fails when grep quits first.
ctld_ok() { [[ $(scontrol ping 2>/dev/null) == *"is UP"* ]]; }
# One line per node from scontrol; DRAIN or DOWN beside IDLE must not count.
node_idle() { [[ $(scontrol -o show node "$node" 2>/dev/null) == *" State=IDLE "* ]]; }

cmd_up() {
  if pid_of munged >/dev/null && pid_of slurmctld >/dev/null && pid_of slurmd >/dev/null && node_idle 2>/dev/null; then
    log "already up: export SLURM_CONF=$conf"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "needs root: slurmd runs jobs as their users"
  cmd_down 2>/dev/null || true
  "$root_dir/containers/install.sh" slurm
  rm -rf "$LS_ROOT/state" "$run" "$logs" "$munge_dir/munged.log"
  write_conf
  if [ ! -s "$munge_dir/munge.key" ]; then
    dd if=/dev/urandom of="$munge_dir/munge.key" bs=1024 count=1 status=none
    chmod 400 "$munge_dir/munge.key"
  fi
  munged --socket="$sock" --key-file="$munge_dir/munge.key" --pid-file="$run/munged.pid" \
    --log-file="$munge_dir/munged.log" --seed-file="$munge_dir/munged.seed" \
    || { dump_logs; die "munged did not start"; }
  until_ok "munged" munge_ok
  slurmctld || { dump_logs; die "slurmctld did not start"; }
  until_ok "slurmctld" ctld_ok
  slurmd -N "$node" || { dump_logs; die "slurmd did not start"; }
  until_ok "node $node" node_idle
  if [ -n "${LS_OWNER:-}" ]; then
    # shellcheck disable=SC2016 # expanded by the watcher's own bash
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; exec "$2" down' \
      watch "$LS_OWNER" "$root_dir/scripts/local-slurm.sh" >> "$logs/watch.log" 2>&1 < /dev/null &
  fi
  log "up ($LS_CPUS CPUs on $node): export SLURM_CONF=$conf"
}

cmd_down() {
  local name pid pids=() t0
  if pid_of slurmctld >/dev/null && [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
    scancel --user="$(id -un)" 2>/dev/null || true
    t0=$SECONDS
    while [ -n "$(squeue -h -o %i 2>/dev/null)" ] && (( SECONDS - t0 < 15 )); do sleep 0.5; done
  fi
  for name in slurmd slurmctld munged; do
    if pid=$(pid_of "$name"); then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
  done
  t0=$SECONDS
  for pid in "${pids[@]}"; do
    while [ -d "/proc/$pid" ] && (( SECONDS - t0 < LS_TIMEOUT )); do sleep 0.25; done
    if [ -d "/proc/$pid" ]; then log "pid $pid ignored TERM: killing it"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -f "$run"/*.pid
  log "down"
}

cmd_status() {
  local name pid rc=0
  for name in munged slurmctld slurmd; do
    if pid=$(pid_of "$name"); then echo "$name: pid $pid"; else echo "$name: not running"; rc=1; fi
  done
  if [ "$rc" = 0 ]; then scontrol -o show node "$node" | grep -o 'State=[^ ]*'; fi
  return "$rc"
}

cmd_wait() {
  local job=${1:?usage: local-slurm.sh wait JOBID [SECS]} limit=${2:-300} t0=$SECONDS info state code
  while :; do
    info=$(scontrol -o show job "$job" 2>/dev/null) || die "job $job is unknown to slurmctld"
    state=$(grep -o ' JobState=[A-Z_]*' <<< "$info" | cut -d= -f2)
    case $state in
      PENDING | CONFIGURING | RUNNING | COMPLETING | SUSPENDED | REQUEUED | REQUEUE_HOLD | REQUEUE_FED | RESIZING | SIGNALING | STAGE_OUT) ;;
      *) break ;;
    esac
    if (( SECONDS - t0 >= limit )); then
      scancel "$job" 2>/dev/null || true
      die "job $job still $state after ${limit}s ($(grep -o ' Reason=[^ ]*' <<< "$info")): cancelled it"
    fi
    sleep 1
  done
  code=$(grep -o ' ExitCode=[0-9]*:[0-9]*' <<< "$info" | cut -d= -f2)
  echo "$state $code"
  [ "$state" = COMPLETED ]
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$conf" ;;
  wait) shift; cmd_wait "$@" ;;
  *) echo "usage: $0 {up|down|status|env|wait JOBID [SECS]}" >&2; exit 2 ;;
esac
