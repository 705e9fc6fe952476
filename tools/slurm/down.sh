#!/usr/bin/env bash
# Stop the test cluster of tools/slurm/up.sh: cancel the jobs still on it, then stop the daemons
# up.sh started, and only those, by the pids it recorded under $PREFIX/run (a munged or MariaDB
# that was running before up.sh is left alone). Packages, configuration, the accounting database
# and $PREFIX stay, so the next up.sh takes a few seconds.
PREFIX=${PREFIX:-/tmp/mmfr-slurm}
MARK="# written by mmfr tools/slurm/up.sh"
# is the pid recorded for daemon $1 alive and still that daemon (not a recycled pid)?
alive() { [ -s "$PREFIX/run/$1.pid" ] && [ "$(cat "/proc/$(cat "$PREFIX/run/$1.pid")/comm" 2>/dev/null)" = "$1" ]; }

# Jobs first: slurmstepd outlives slurmd, so a job left running would keep running after we stop.
# Only on our own cluster (the slurm.conf up.sh wrote) whose controller we started.
if alive slurmctld && grep -qF "$MARK" /etc/slurm/slurm.conf 2>/dev/null; then
  jobs=$(squeue -h -o %A 2>/dev/null)
  if [ -n "$jobs" ]; then
    echo "cancelling jobs:" $jobs
    # shellcheck disable=SC2086
    scancel $jobs
    for _ in $(seq 50); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi
for d in slurmd slurmctld slurmdbd mariadbd munged; do   # clients before the servers they need
  f=$PREFIX/run/$d.pid
  [ -s "$f" ] || continue
  pid=$(cat "$f")
  if alive "$d"; then
    kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; echo "killed $d ($pid)"; else echo "stopped $d ($pid)"; fi
  fi
  rm -f "$f"
done
