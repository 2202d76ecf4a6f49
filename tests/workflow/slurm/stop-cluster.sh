#!/usr/bin/env bash
# Stop what tests/workflow/slurm/start-cluster.sh STATE_DIR started, newest first, and remove the
# /etc/slurm files it wrote (only those carrying its marker). Safe to run twice.
set -uo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

[ $# -eq 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
STATE=$(realpath -m "$1")
MARK="isoflow-test-cluster"

stop_pidfile() {  # stop_pidfile NAME PIDFILE: TERM, wait up to 20 s, then KILL
  local name=$1 pidfile=$2 pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

if [ -s "$STATE/run/slurmctld.pid" ] && kill -0 "$(cat "$STATE/run/slurmctld.pid")" 2>/dev/null; then
  # Jobs of this throwaway cluster only; wait for slurmd to end their processes.
  squeue -h -o %i 2>/dev/null | xargs -r scancel 2>/dev/null || true
  for _ in $(seq 30); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
    sleep 1
  done
fi
stop_pidfile slurmd "$STATE/run/slurmd.pid"
stop_pidfile slurmctld "$STATE/run/slurmctld.pid"
stop_pidfile slurmdbd "$STATE/run/slurmdbd.pid"
stop_pidfile mariadbd "$STATE/run/mysqld.pid"
if [ -e "$STATE/run/munged.started" ]; then
  stop_pidfile munged /run/munge/munged.pid
  rm -f "$STATE/run/munged.started"
fi
for f in slurm.conf slurmdbd.conf gres.conf; do
  if [ -e "/etc/slurm/$f" ] && head -n 1 "/etc/slurm/$f" | grep -F "$MARK" | grep -qF "(state in $STATE)"; then
    rm -f "/etc/slurm/$f"
  fi
done
exit 0
