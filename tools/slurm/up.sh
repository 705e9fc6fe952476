#!/usr/bin/env bash
# Bring up a real single-node SLURM 22.05 cluster on this machine, for tests.
#
# It installs Debian's packages if they are missing (munge, slurmctld, slurmd, slurm-client and,
# for accounting, MariaDB + slurmdbd), writes /etc/slurm/{slurm,cgroup,gres,slurmdbd}.conf and
# starts the daemons by hand (no systemd). All state, logs and pid files live under $PREFIX;
# tools/slurm/down.sh stops exactly the daemons this script started, by their recorded pids.
# Run as root. Idempotent: a second run restarts the SLURM daemons and takes a few seconds.
#
#   PREFIX=/tmp/mmfr-slurm   state, spool, logs, pid files, fake GPU device links
#   ACCOUNTING=slurmdbd      MariaDB + slurmdbd, so sacct/sacctmgr work as on a real cluster
#   ACCOUNTING=none          no database (then give `slurm-status-command: squeue` to Snakemake)
#   FAKE_GPUS=2              gpu GRES backed by /dev/null: --gpus=1 schedules and sets
#                            CUDA_VISIBLE_DEVICES, with no GPU behind it (0 = no GRES)
#   NODE_MEM_MB=...          memory the node declares (default: 90% of this machine's)
#   FRESH=1                  wipe the controller's state, spool and logs first
#   FORCE=1                  overwrite an /etc/slurm/slurm.conf this script did not write
#
# Pitfalls met on the way (each is handled below, or by the Snakemake profile):
# - a GPU in gres.conf needs a character device as File=, else slurmd drops the "file-less GPU";
#   hence the /dev/null links under $PREFIX/fakegpu;
# - Snakemake's slurm_extra may not carry --gres/--gpus: request GPUs with the `gpu` or `gres`
#   resources instead (profiles/slurm-test/config.yaml does);
# - without slurmdbd, `sacct` exists but fails: use `slurm-status-command: squeue` then;
# - with slurmdbd, every job needs an account with an association: give
#   `slurm_account: <ACCOUNT>` in the profile's default-resources (this script creates it);
# - the executor plugin waits 40 s before its first status check, so every job seems to take
#   ~50 s: set `slurm-init-seconds-before-status-checks: 1` for a local test cluster;
# - there are no cgroups (containers, cgroup v2 without systemd): memory and CPU limits are
#   scheduling figures only, nothing enforces them;
# - a job that asks for no memory gets the whole node (SLURM's default), which keeps every other
#   job waiting: DefMemPerCPU below;
# - after slurmctld restarts, job records reach slurmdbd a few seconds late: the smoke test waits
#   for its own job's record, not for any COMPLETED line;
# - stopping slurmd does not stop running jobs (slurmstepd outlives it): down.sh cancels them first.
set -euo pipefail
PREFIX=${PREFIX:-/tmp/mmfr-slurm}
ACCOUNTING=${ACCOUNTING:-slurmdbd}
FAKE_GPUS=${FAKE_GPUS:-2}
CLUSTER=${CLUSTER:-ci}
ACCOUNT=${ACCOUNT:-ciacct}
PARTITION=${PARTITION:-debug}
MARK="# written by mmfr tools/slurm/up.sh"

say() { printf '[up.sh %3ds] %s\n' "$SECONDS" "$*"; }
die() { printf '[up.sh %3ds] ERROR: %s\n' "$SECONDS" "$*" >&2; exit 1; }
wait_for() { # wait_for <tries of 0.2 s> <cmd...>: poll until the command succeeds
  local n=$1; shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "timeout waiting for: $*" >&2; return 1
}
stop_pidfile() { # stop the daemon whose pid we recorded (if that pid is still that daemon)
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(basename "$f" .pid)" ]; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$f"
}

[ "$(id -u)" = 0 ] || die "must run as root (it installs packages and starts daemons)"
command -v dpkg >/dev/null && command -v apt-get >/dev/null || die "needs dpkg and apt-get (Debian/Ubuntu)"
if [ -e /etc/slurm/slurm.conf ] && ! grep -qF "$MARK" /etc/slurm/slurm.conf && [ "${FORCE:-0}" != 1 ]; then
  die "/etc/slurm/slurm.conf exists and was not written by this script; refusing to replace it (FORCE=1 to override)"
fi

# ---------- 1. packages ----------
# A policy-rc.d that answers 101 keeps the packages' init scripts from starting the daemons
# during installation: we start them ourselves, with our own configuration.
PKGS="slurmctld slurmd slurm-client munge"
[ "$ACCOUNTING" = slurmdbd ] && PKGS="$PKGS slurmdbd mariadb-server mariadb-client"
missing=$(for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  export DEBIAN_FRONTEND=noninteractive
  say "installing:" $missing
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
  rm -f /usr/sbin/policy-rc.d; trap - EXIT
  say "installed"
fi

mkdir -p "$PREFIX"/{state,spool,log,run,fakegpu}
if [ "${FRESH:-0}" = 1 ]; then
  for d in slurmd slurmctld; do stop_pidfile "$PREFIX/run/$d.pid"; done
  rm -rf "$PREFIX"/state/* "$PREFIX"/spool/* "$PREFIX"/log/*
fi

# ---------- 2. munge (authentication between the daemons and the clients) ----------
[ -s /etc/munge/munge.key ] || mungekey -c -f -k /etc/munge/munge.key
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
if ! (munge -n | unmunge) >/dev/null 2>&1; then   # a munged already running is left alone
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged --force
  wait_for 50 sh -c 'munge -n | unmunge'
  cp /run/munge/munged.pid "$PREFIX/run/munged.pid"
fi
say "munge ok"

# ---------- 3. configuration ----------
H=$(hostname -s)
HW=$(slurmd -C | head -1)                       # NodeName=.. CPUs=.. ... RealMemory=N
MEM=${NODE_MEM_MB:-$(( $(echo "$HW" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p') * 90 / 100 ))}
NODE=$(echo "$HW" | sed "s/^NodeName=[^ ]*/NodeName=$H NodeAddr=127.0.0.1/; s/RealMemory=[0-9]*/RealMemory=$MEM/")
GRESTYPES=""; GRES=""
mkdir -p /etc/slurm
if [ "$FAKE_GPUS" -gt 0 ]; then
  GRESTYPES="GresTypes=gpu"; GRES="Gres=gpu:$FAKE_GPUS"
  echo "$MARK" > /etc/slurm/gres.conf
  for i in $(seq 0 $((FAKE_GPUS - 1))); do
    ln -sfn /dev/null "$PREFIX/fakegpu/gpu$i"   # must be a character device (see above)
    echo "NodeName=$H Name=gpu File=$PREFIX/fakegpu/gpu$i" >> /etc/slurm/gres.conf
  done
else
  rm -f /etc/slurm/gres.conf
fi
if [ "$ACCOUNTING" = slurmdbd ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/linux"
else
  ACCT="AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none"
fi
# MinJobAge: finished jobs stay visible to squeue/scontrol for 5 minutes.
# DefMemPerCPU: a job that asks for no memory gets 1 GB per CPU, not the whole node (the
# default), which would keep every other job waiting.
cat > /etc/slurm/slurm.conf <<CONF
$MARK (PREFIX=$PREFIX)
ClusterName=$CLUSTER
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$PREFIX/state
SlurmdSpoolDir=$PREFIX/spool
SlurmctldPidFile=$PREFIX/run/slurmctld.pid
SlurmdPidFile=$PREFIX/run/slurmd.pid
SlurmctldLogFile=$PREFIX/log/slurmctld.log
SlurmdLogFile=$PREFIX/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
DefMemPerCPU=1000
JobCompType=jobcomp/none
$ACCT
$GRESTYPES
$NODE $GRES State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
# never touch cgroups (works in containers and on cgroup v2 hosts without systemd)
printf '%s\nCgroupPlugin=cgroup/v1\nCgroupAutomount=no\n' "$MARK" > /etc/slurm/cgroup.conf
say "config written ($NODE $GRES)"

# ---------- 4. accounting: MariaDB + slurmdbd, a cluster, an account, root in it ----------
if [ "$ACCOUNTING" = slurmdbd ]; then
  if ! mariadb -e 'select 1' >/dev/null 2>&1; then   # a server already running is left alone
    install -d -o mysql -g mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql >/dev/null
    setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
      </dev/null >"$PREFIX/log/mariadb.log" 2>&1 &
    wait_for 150 mariadb -e 'select 1'
    cp /run/mysqld/mysqld.pid "$PREFIX/run/mariadbd.pid"
  fi
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat > /etc/slurm/slurmdbd.conf <<CONF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$PREFIX/log/slurmdbd.log
PidFile=$PREFIX/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
  chmod 600 /etc/slurm/slurmdbd.conf          # slurmdbd refuses a readable file with a password
  stop_pidfile "$PREFIX/run/slurmdbd.pid"
  /usr/sbin/slurmdbd
  wait_for 150 sacctmgr -n list cluster
  sacctmgr -n list cluster format=cluster | grep -qw "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
  sacctmgr -n list account format=account | grep -qw "$ACCOUNT" ||
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description=ci Organization=ci >/dev/null
  sacctmgr -n list assoc user=root account="$ACCOUNT" format=user | grep -qw root ||
    sacctmgr -i add user root Account="$ACCOUNT" >/dev/null
  say "mariadb + slurmdbd ok (account $ACCOUNT)"
fi

# ---------- 5. slurmctld + slurmd ----------
stop_pidfile "$PREFIX/run/slurmd.pid"
stop_pidfile "$PREFIX/run/slurmctld.pid"
/usr/sbin/slurmctld
wait_for 100 scontrol ping
/usr/sbin/slurmd
wait_for 100 sh -c "sinfo -h -n $H -o %T | grep -Eq '^(idle|mixed|allocated|drain|drained)'"
# a node that went down with the previous controller comes back drained: resume it
if sinfo -h -n "$H" -o %T | grep -q drain; then scontrol update NodeName="$H" State=RESUME; fi
wait_for 100 sh -c "sinfo -h -n $H -o %T | grep -qx idle"
say "slurm up: $(sinfo -h -o '%P %a %D %T %G')"

# ---------- 6. smoke test: a job, a (fake) GPU job, and accounting that sees them ----------
srun -N1 -t 1 hostname >/dev/null
GPU_ARG=""; [ "$FAKE_GPUS" -gt 0 ] && GPU_ARG="--gpus=1"
# the job prints its id; with a GPU it must see CUDA_VISIBLE_DEVICES
jid=$(srun -t 1 $GPU_ARG sh -c 'test -z "$SLURM_JOB_GPUS" || test -n "$CUDA_VISIBLE_DEVICES" && echo $SLURM_JOB_ID')
if [ "$ACCOUNTING" = slurmdbd ]; then
  wait_for 50 sh -c "sacct -X -n -j $jid -o State | grep -q COMPLETED"
fi
say "smoke test ok"
