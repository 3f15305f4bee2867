#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the cluster tests and for trying `--executor slurm`:
# munged, MariaDB, slurmdbd (accounting: submitit reads job states with sacct), slurmctld and slurmd,
# this machine the one node with its CPUs. Configuration, state and logs live in one folder
# (BENCH_SLURM_DIR, default /tmp/bench-slurm); nothing is written to /etc.
#
#   scripts/local_slurm.sh start     # then: export SLURM_CONF=/tmp/bench-slurm/etc/slurm.conf
#   scripts/local_slurm.sh stop
#   scripts/local_slurm.sh status
#
# Installs Debian's slurm-wlm, slurmdbd, munge and mariadb-server when they are missing (as root).
# The plugins are those that work in a VM or container without cgroups: proctrack/linuxproc, task/none.
# Job credentials expire after 10 s (cred_expire), which is also how long a requeued job waits to start
# again (Slurm's default, 120 s, would slow the tests of preempted sweep workers).
set -euo pipefail

DIR=${BENCH_SLURM_DIR:-/tmp/bench-slurm}
HOST=$(hostname -s)
CPUS=$(nproc)
MEMORY_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
DB_PORT=${BENCH_SLURM_DB_PORT:-3307}

install() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurm-wlm)
    command -v slurmdbd >/dev/null || missing+=(slurmdbd)
    command -v munged >/dev/null || missing+=(munge)
    command -v mariadbd >/dev/null || missing+=(mariadb-server)
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

write_config() {
    mkdir -p "$DIR"/{etc,log,munge,mysql,spool/ctld,spool/d,run}
    cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=bench
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
CredType=cred/munge
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${BENCH_SLURM_CTLD_PORT:-6817}
SlurmdPort=${BENCH_SLURM_D_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$HOST
AccountingStoragePort=${BENCH_SLURMDBD_PORT:-6819}
AccountingStoragePass=$DIR/munge/munge.socket
AccountingStorageEnforce=associations,limits,qos
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=$((MEMORY_MB / CPUS))
MpiDefault=none
ReturnToService=2
KillWait=5
MessageTimeout=30
SchedulerParameters=sched_interval=2
SlurmctldParameters=enable_configless
NodeName=$HOST CPUs=$CPUS RealMemory=$MEMORY_MB State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
DbdHost=$HOST
DbdPort=${BENCH_SLURMDBD_PORT:-6819}
SlurmUser=root
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq "$seconds"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    echo "local_slurm: $what did not come up; see $DIR/log" >&2
    return 1
}

start() {
    install
    stop quiet
    write_config
    export SLURM_CONF=$DIR/etc/slurm.conf

    if [ ! -f "$DIR/munge/munge.key" ]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chown -R munge:munge "$DIR/munge"
    chmod 755 "$DIR/munge"
    chmod 400 "$DIR/munge/munge.key"
    runuser -u munge -- munged --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" --seed-file="$DIR/munge/munged.seed" \
        </dev/null >/dev/null 2>&1
    wait_for 20 munged munge --socket="$DIR/munge/munge.socket" -n

    if [ ! -d "$DIR/mysql/mysql" ]; then
        mariadb-install-db --datadir="$DIR/mysql" --user=root --auth-root-authentication-method=normal \
            >"$DIR/log/mariadb-install.log" 2>&1
    fi
    mariadbd --no-defaults --datadir="$DIR/mysql" --user=root --bind-address=127.0.0.1 --port="$DB_PORT" \
        --socket="$DIR/run/mysqld.sock" --pid-file="$DIR/run/mysqld.pid" --innodb-buffer-pool-size=64M \
        --log-error="$DIR/log/mariadb.log" </dev/null >>"$DIR/log/mariadb.out" 2>&1 &
    wait_for 60 MariaDB mariadb --no-defaults --socket="$DIR/run/mysqld.sock" -uroot -e 'select 1'
    mariadb --no-defaults --socket="$DIR/run/mysqld.sock" -uroot -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"

    slurmdbd </dev/null >/dev/null 2>&1
    wait_for 60 slurmdbd sacctmgr -i list cluster
    sacctmgr -i add cluster bench >/dev/null 2>&1 || true
    sacctmgr -i add account bench Cluster=bench Description=bench Organization=bench >/dev/null 2>&1 || true
    sacctmgr -i add user root Account=bench >/dev/null 2>&1 || true
    if [ "$(id -un)" != root ]; then sacctmgr -i add user "$(id -un)" Account=bench >/dev/null 2>&1 || true; fi

    slurmctld </dev/null >/dev/null 2>&1
    wait_for 60 slurmctld scontrol ping
    slurmd -N "$HOST" </dev/null >/dev/null 2>&1
    wait_for 60 "the node" bash -c "sinfo -h -N -o %T | grep -qE '^(idle|mixed|allocated)'"
    echo "export SLURM_CONF=$SLURM_CONF"
}

stop() {
    export SLURM_CONF=$DIR/etc/slurm.conf
    for name in slurmd slurmctld slurmdbd mysqld munge/munged; do
        local pidfile="$DIR/run/$name.pid"
        [ "$name" = munge/munged ] && pidfile="$DIR/munge/munged.pid"
        if [ -f "$pidfile" ]; then
            local pid
            pid=$(cat "$pidfile")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$pidfile"
        fi
    done
    [ "${1:-}" = quiet ] || echo "local_slurm: stopped"
}

status() {
    export SLURM_CONF=$DIR/etc/slurm.conf
    scontrol ping && sinfo && sacctmgr -n list cluster format=cluster
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
