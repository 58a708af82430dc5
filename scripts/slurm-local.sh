#!/usr/bin/env bash
# A single-node Slurm cluster on this (Debian) machine, for kdx's cluster test and for trying
# hydra/launcher=slurm before a real cluster: slurmctld + slurmd + munge from Debian's packages, a minimal
# slurm.conf with this machine's CPUs and memory, no accounting, no cgroups.
#   scripts/slurm-local.sh start    # install if needed, configure, start (idempotent)
#   scripts/slurm-local.sh status   # controller reachable? node state
#   scripts/slurm-local.sh stop     # stop the daemons (the packages stay installed)
# Needs root (apt-get, daemons). Partition "kdx", the default.
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/lib/slurm-local
LOGS=/var/log/slurm-local
RUN=/run/slurm-local
NODE=$(hostname -s)

need_root() {
  if [ "$(id -u)" != 0 ]; then echo "slurm-local: needs root (apt-get and the daemons)" >&2; exit 1; fi
}

install_packages() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q slurm-wlm munge >/dev/null; }
}

write_conf() {
  local cpus mem
  cpus=$(nproc)
  # Leave 1 GiB to the system; Slurm's RealMemory is in MiB.
  mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
  mkdir -p "$CONF_DIR" "$STATE/ctld" "$STATE/d" "$LOGS" "$RUN"
  cat > "$CONF_DIR/slurm.conf" <<CONF
# Written by kdx scripts/slurm-local.sh: one node, this machine.
ClusterName=kdx-local
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=kdx Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
}

running() { pgrep -x "$1" >/dev/null; }

start_munge() {
  if running munged; then return; fi
  [ -s /etc/munge/munge.key ] || { mungekey --create --force 2>/dev/null || create-munge-key -f; }
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
  chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
  if id munge >/dev/null 2>&1; then su -s /bin/sh munge -c munged; else munged --force; fi
}

wait_for_node() {
  for _ in $(seq 1 60); do
    state=$(sinfo -h -n "$NODE" -o %t 2>/dev/null || true)
    case "$state" in
      idle*|mix*|alloc*) return 0 ;;
      down*|drain*|unk*) scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  echo "slurm-local: node $NODE did not become idle; see $LOGS" >&2
  return 1
}

start() {
  need_root
  install_packages
  if running slurmctld && running slurmd && scontrol ping >/dev/null 2>&1; then
    echo "slurm-local: already running"; status; return
  fi
  write_conf
  start_munge
  running slurmctld || slurmctld
  running slurmd || slurmd
  wait_for_node
  status
}

stop() {
  need_root
  scontrol shutdown >/dev/null 2>&1 || true
  for daemon in slurmd slurmctld; do pkill -x "$daemon" 2>/dev/null || true; done
  pkill -x munged 2>/dev/null || true
  for _ in $(seq 1 20); do running slurmctld || running slurmd || break; sleep 0.5; done
  echo "slurm-local: stopped"
}

status() {
  if ! command -v scontrol >/dev/null; then echo "slurm-local: not installed"; return 1; fi
  if scontrol ping 2>/dev/null | grep -q UP; then
    sinfo -o "%P %a %D %t %c %m" 2>/dev/null
  else
    echo "slurm-local: controller not running"; return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
