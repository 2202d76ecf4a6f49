#!/usr/bin/env bash
# Start a throwaway single-node SLURM cluster on 127.0.0.1 for tests/workflow/test_slurm.py:
# munge, MariaDB (fresh data directory under STATE_DIR), slurmdbd, slurmctld and slurmd, with
# accounting and two fake GPUs. Installs nothing (.ci/install-debian.sh does).
#
#   bash tests/workflow/slurm/start-cluster.sh STATE_DIR     # stop with tests/workflow/slurm/stop-cluster.sh STATE_DIR
#
# Exit 0: cluster up (STATE_DIR/cluster.env says its names). Exit 2: it cannot run here (not
# root, a package missing, a real SLURM configuration or daemon present); nothing was changed.
# Exit 1: starting failed; what was started is stopped again and the logs' tails are printed.
# SLURM reads /etc/slurm/slurm.conf: the executor plugin's job steps clear SLURM_CONF, so the
# configuration cannot live elsewhere. The files written there carry a marker line and
# stop-cluster.sh removes only files with that marker.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:$PATH

[ $# -eq 1 ] || { echo "usage: $0 STATE_DIR" >&2; exit 2; }
STATE=$(realpath -m "$1")
HERE=$(dirname "$(realpath "$0")")
CLUSTER=${ISOFLOW_TEST_CLUSTER:-isoflowtest}
PARTITION=${ISOFLOW_TEST_PARTITION:-isoflow}
ACCOUNT=${ISOFLOW_TEST_ACCOUNT:-isoflow}
MARK="isoflow-test-cluster"
CONF_DIR=/etc/slurm

cannot() { echo "cannot start a test SLURM cluster here: $*" >&2; exit 2; }

[ "$(id -u)" -eq 0 ] || cannot "it needs root (the daemons run as root); running as $(id -un)"
for tool in munged mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd sbatch sacct \
  sacctmgr scontrol sinfo squeue; do
  command -v "$tool" >/dev/null || cannot "'$tool' is not installed (bash .ci/install-debian.sh installs it)"
done
for f in slurm.conf slurmdbd.conf gres.conf; do
  if [ -e "$CONF_DIR/$f" ] && ! head -n 1 "$CONF_DIR/$f" | grep -q "$MARK"; then
    cannot "$CONF_DIR/$f exists and was not written by this script (a real cluster's file is left alone)"
  fi
done
for daemon in slurmctld slurmd slurmdbd; do
  if pgrep -x "$daemon" >/dev/null; then
    cannot "a $daemon is already running (stop it, or stop-cluster.sh the state dir that started it)"
  fi
done

mkdir -p "$STATE"/{run,log,slurmctld,slurmd,mysql}

on_error() {
  echo "start-cluster.sh: starting failed; stopping what was started. Log tails:" >&2
  for log in "$STATE"/log/*.log; do
    [ -s "$log" ] && { echo "== $log" >&2; tail -n 20 "$log" >&2; }
  done
  bash "$HERE/stop-cluster.sh" "$STATE" >&2 || true
  exit 1
}
trap on_error ERR

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq "$seconds"); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  echo "start-cluster.sh: $what did not come up within ${seconds}s" >&2
  return 1
}

DB_PORT=$(free_port)
DBD_PORT=$(free_port)
CTLD_PORT=$(free_port)
SLURMD_PORT=$(free_port)
DB_PASS=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
MEM_MB=$(awk '/^MemTotal:/ {m = int($2 / 1024) - 4096; print (m < 1024 ? 1024 : m)}' /proc/meminfo)
CPUS=$(nproc)

# munge: reuse a running munged, else start one (and remember to stop it).
if ! pgrep -x munged >/dev/null; then
  [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
  mkdir -p /run/munge && chown munge: /run/munge
  runuser -u munge -- munged
  touch "$STATE/run/munged.started"
fi
wait_for 10 munged bash -c 'munge -n | unmunge'

# MariaDB: a private instance on a free port, data directory inside STATE.
mariadb-install-db --no-defaults --user=root --datadir="$STATE/mysql" \
  --auth-root-authentication-method=socket --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1
setsid mariadbd --no-defaults --user=root --datadir="$STATE/mysql" \
  --socket="$STATE/run/mysqld.sock" --port="$DB_PORT" --bind-address=127.0.0.1 \
  --pid-file="$STATE/run/mysqld.pid" --log-error="$STATE/log/mariadb.log" \
  --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 </dev/null >/dev/null 2>&1 &
SQL=(mariadb --no-defaults --socket="$STATE/run/mysqld.sock" -u root)
wait_for 60 MariaDB "${SQL[@]}" -e 'SELECT 1'
"${SQL[@]}" <<SQL_END
CREATE DATABASE slurm_acct_db;
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL_END

# SLURM configuration (see the templates beside this script).
mkdir -p "$CONF_DIR"
for f in slurm.conf slurmdbd.conf gres.conf; do
  sed -e "s|@STATE@|$STATE|g" -e "s|@CLUSTER@|$CLUSTER|g" -e "s|@PARTITION@|$PARTITION|g" \
    -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
    -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DB_PASS@|$DB_PASS|g" -e "s|@MEM_MB@|$MEM_MB|g" \
    -e "s|@CPUS@|$CPUS|g" "$HERE/$f.in" >"$CONF_DIR/$f"
done
chmod 600 "$CONF_DIR/slurmdbd.conf"

slurmdbd
wait_for 60 slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null
sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description=isoflow-tests organization=isoflow >/dev/null
sacctmgr -i add user root account="$ACCOUNT" cluster="$CLUSTER" >/dev/null

slurmctld
wait_for 60 slurmctld bash -c 'scontrol ping | grep -q UP'
slurmd -N localhost
wait_for 60 "node localhost (idle)" bash -c '[ "$(sinfo -h -n localhost -o %T)" = idle ]'

cat >"$STATE/cluster.env" <<ENV_END
CLUSTER=$CLUSTER
PARTITION=$PARTITION
ACCOUNT=$ACCOUNT
CPUS=$CPUS
MEM_MB=$MEM_MB
ENV_END
trap - ERR
echo "test SLURM cluster '$CLUSTER' up: partition $PARTITION, account $ACCOUNT, node localhost" \
  "(CPUs=$CPUS RealMemory=${MEM_MB}MB gpu:2 fake), state in $STATE"
sinfo -N -o '%N %P %T %c %m %G'
