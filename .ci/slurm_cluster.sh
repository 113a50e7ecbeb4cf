#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests/test_slurm_cluster.py (CI starts it in .ci/run).
#
#   bash .ci/slurm_cluster.sh start    install what is missing, write the configs, start the daemons,
#                                      wait until the node is idle (safe to run again: restarts them)
#   bash .ci/slurm_cluster.sh stop     stop the daemons this script started (by their pid files)
#   bash .ci/slurm_cluster.sh status   sinfo and squeue
#
# Debian's packages: munge (authentication), slurmctld + slurmd (one node named after `hostname -s`,
# every CPU and the memory `slurmd -C` detects), and slurmdbd over a private MariaDB, because
# submitit reads job states with `sacct`, which only answers from the accounting database.
# The daemons talk over 127.0.0.1 and listen there (slurmdbd, which has no such setting, on every
# address). No systemd and no cgroups in a container: the daemons are started directly, processes
# are tracked by parent pid (proctrack/linuxproc) and tasks are not bound (task/none). The config
# goes where every SLURM command looks (/etc/slurm): a slurm.conf that this script did not write is
# never overwritten.
set -euo pipefail

STATE="${COMPBENCH_SLURM_STATE:-/var/spool/compbench-slurm}"  # spool, state, logs, database, pid files
CONF_DIR=/etc/slurm
MARK="# written by compbench .ci/slurm_cluster.sh"
CLUSTER=compbench
PARTITION=debug
DB_PORT="${COMPBENCH_SLURM_DB_PORT:-6833}"  # MariaDB on 127.0.0.1, for slurmdbd alone
DB_PASS=compbench-ci                           # a throwaway database reachable from this machine only
NODE="$(hostname -s)"

log() { echo "slurm_cluster: $*"; }
die() { echo "slurm_cluster: error: $*" >&2; exit 1; }

wait_for() {  # wait_for SECONDS WHAT COMMAND...: retry COMMAND until it succeeds
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq "$((seconds * 4))"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  die "$what did not come up in ${seconds}s; logs in $STATE/log"
}

install_packages() {
  local missing=()
  command -v munged >/dev/null || missing+=(munge)
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null || missing+=(slurm-wlm)
  command -v slurmdbd >/dev/null || missing+=(slurmdbd)
  command -v mariadbd >/dev/null || missing+=(mariadb-server)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

stop_pidfile() {  # stop_pidfile FILE NAME: SIGTERM the NAME process FILE names, wait up to 20 s, then SIGKILL
  local file=$1 name=$2 pid
  [ -s "$file" ] || return 0
  pid="$(cat "$file")"
  # A pid file left by daemons that ended otherwise may name a process that reused the pid since.
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 80); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

stop() {
  stop_pidfile "$STATE/run/slurmd.pid" slurmd
  stop_pidfile "$STATE/run/slurmctld.pid" slurmctld
  stop_pidfile "$STATE/run/slurmdbd.pid" slurmdbd
  stop_pidfile "$STATE/run/mariadb.pid" mariadbd
  stop_pidfile "$STATE/run/munged.pid" munged
}

write_configs() {
  if [ -e "$CONF_DIR/slurm.conf" ] && ! grep -qxF "$MARK" "$CONF_DIR/slurm.conf"; then
    die "$CONF_DIR/slurm.conf exists and was not written by this script: not touching a real cluster's config"
  fi
  # What slurmd finds on this machine (CPUs, sockets, cores, threads, RealMemory), as slurmd will check it.
  local hardware
  hardware="$(slurmd -C | head -1 | sed -e 's/^NodeName=[^ ]* //')"
  mkdir -p "$CONF_DIR"
  cat >"$CONF_DIR/slurm.conf" <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
# SLURM requeues the jobs of a node that goes down and holds them back for cred_expire seconds
# (120 by default): 10 keeps the node-failure test short; a job step here starts well within it.
AuthInfo=cred_expire=10
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Look at pending jobs every 5 s (60 and 30 by default): a job whose hold ends starts soon after.
SchedulerParameters=sched_interval=5,bf_interval=5
ReturnToService=1  # a node set DOWN by hand stays down until scontrol sets it to RESUME
# A cancelled job gets SIGTERM, then SIGKILL this many seconds later: time for the cell's parent
# process to write the failed record of the cell it was running.
KillWait=30
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobCompType=jobcomp/none
NodeName=$NODE NodeAddr=127.0.0.1 $hardware State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=60 DefaultTime=10 State=UP
EOF
  cat >"$CONF_DIR/slurmdbd.conf" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
  chmod 600 "$CONF_DIR/slurmdbd.conf"  # slurmdbd refuses a config others can read (it holds a password)
}

start_munge() {
  install -d -o munge -g munge -m 0755 /run/munge "$STATE/munge"
  runuser -u munge -- munged --pid-file="$STATE/munge/munged.pid" --log-file="$STATE/munge/munged.log"
  ln -sf "$STATE/munge/munged.pid" "$STATE/run/munged.pid"
  wait_for 20 munged bash -c 'munge -n | unmunge'
}

start_database() {
  local datadir="$STATE/mysql"
  install -d -o mysql -g mysql "$datadir"
  mariadb-install-db --user=mysql --datadir="$datadir" --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1
  install -d -o mysql -g mysql "$STATE/mysql-run"
  setsid mariadbd --no-defaults --user=mysql --datadir="$datadir" --bind-address=127.0.0.1 --port="$DB_PORT" \
    --socket="$STATE/mysql-run/mysqld.sock" --pid-file="$STATE/mysql-run/mariadb.pid" \
    --log-error="$STATE/mysql-run/mariadb.log" --innodb-buffer-pool-size=32M </dev/null >/dev/null 2>&1 &
  wait_for 60 MariaDB mariadb-admin --no-defaults --socket="$STATE/mysql-run/mysqld.sock" ping
  ln -sf "$STATE/mysql-run/mariadb.pid" "$STATE/run/mariadb.pid"
  mariadb --no-defaults --socket="$STATE/mysql-run/mysqld.sock" -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

node_idle() { [ "$(sinfo -h -n "$NODE" -o %t)" = idle ]; }

start() {
  [ "$(id -u)" = 0 ] || die "run as root (it installs packages and starts daemons)"
  install_packages
  stop  # a restart: whatever an earlier start left running
  # A fresh cluster every start: job ids restart at 1 in a new state directory, so an old
  # accounting database would answer sacct with an earlier job's state.
  if [ -d "$STATE" ] && [ -n "$(ls -A "$STATE")" ] && [ ! -e "$STATE/.compbench-slurm" ]; then
    die "$STATE is not empty and was not made by this script; set COMPBENCH_SLURM_STATE to another directory"
  fi
  rm -rf "$STATE"
  mkdir -p "$STATE"/{ctld,d,log,run}
  touch "$STATE/.compbench-slurm"
  write_configs
  start_munge
  start_database
  slurmdbd
  wait_for 60 slurmdbd sacctmgr -n list cluster
  sacctmgr -i -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  slurmctld
  wait_for 30 slurmctld scontrol ping
  slurmd
  wait_for 60 "node $NODE" node_idle
  log "cluster $CLUSTER up: partition $PARTITION, node $NODE ($(sinfo -h -n "$NODE" -o '%c CPUs, %m MB'))"
}

case "${1:-}" in
  start) start ;;
  stop) stop; log "stopped" ;;
  status) sinfo; squeue ;;
  *) die "usage: $0 start|stop|status" ;;
esac
