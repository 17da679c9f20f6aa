"""A real single-node SLURM cluster in a temporary directory, for tests (docs/cluster.md).

munged, MariaDB, slurmdbd (so that ``sacct`` works: submitit polls it, and the tests read job
states from it), slurmctld and slurmd run as this user from their own config, state and spool
dirs, on free ports; nothing outside the directory is read or written. ``SLURM_CONF`` in
``cluster.env`` points SLURM's commands (sbatch, squeue, sacct, scontrol) at it. Every daemon
is started here in the foreground, so it is stopped by its own PID (``stop``), also when a test
failed; jobs still queued or running are cancelled first.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

PACKAGES = "slurm-wlm munge slurmdbd mariadb-server-core"
APT_LINE = f"apt-get update && apt-get install -y --no-install-recommends {PACKAGES}"
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
COMMANDS = ("sinfo", "squeue", "sbatch", "sacct", "scontrol", "scancel", "sacctmgr")
PARTITION = "debug"
CPUS = 2
CRED_EXPIRE_S = 10


def program(name: str) -> str | None:
    """The path of ``name``: the daemons live in /usr/sbin, which a user's PATH may lack."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")


def missing_programs() -> list[str]:
    """The programs this cluster needs that are not installed (empty: it can run)."""
    return [name for name in (*DAEMONS, *COMMANDS) if program(name) is None]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(what: str, ready, timeout: float = 60.0, logs: tuple[Path, ...] = ()) -> None:
    """Poll ``ready()`` until true; on timeout raise with the tail of the daemons' logs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.3)
    tails = "\n".join(f"--- {p}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
                      for p in logs if p.exists())
    raise RuntimeError(f"local SLURM: {what} not ready after {timeout:.0f} s\n{tails}")


class LocalSlurm:
    """One node (this machine, ``CPUS`` CPUs) in one partition; ``start()`` then ``stop()``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.conf = root / "slurm.conf"
        path = os.pathsep.join(filter(None, [os.environ.get("PATH"), "/usr/sbin", "/sbin"]))  # the daemons
        self.env = {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}
        self.partition = PARTITION
        self.procs: dict[str, subprocess.Popen] = {}
        self.ports = {name: free_port() for name in ("ctld", "slurmd", "dbd", "mysql")}
        self.socket = root / "run" / "munge.socket"

    # --- commands ------------------------------------------------------------------------
    def run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """A SLURM command against this cluster; its stdout."""
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def sacct(self, job: str) -> dict[str, str]:
        """``{job id: state}`` of every allocation of ``job`` (array tasks: ``<id>_<task>``)."""
        out = self.run("sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", job, check=False)
        return dict(line.split("|", 1) for line in out.splitlines() if "|" in line)

    def queue(self) -> list[str]:
        """Job ids still queued or running."""
        return self.run("squeue", "-h", "-o", "%i", check=False).split()

    # --- start -----------------------------------------------------------------------------
    def start(self) -> None:
        for sub in ("state", "spool", "log", "db", "run"):
            (self.root / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)  # munged refuses a socket dir others may write to
        self._start_munge()
        self._start_mariadb()
        self._write_configs()
        self._spawn("slurmdbd", ["slurmdbd", "-D"], "slurmdbd.log")
        wait_for("slurmdbd", lambda: self._listening(self.ports["dbd"]), logs=self._logs())
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)], "slurmctld.log")
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node], "slurmd.log")
        wait_for("node idle in sinfo", self._node_idle, timeout=90, logs=self._logs())
        wait_for("cluster in sacctmgr", self._registered, timeout=60, logs=self._logs())

    def _start_munge(self) -> None:
        key = self.root / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn("munged", ["munged", "-F", "--force", f"--socket={self.socket}", f"--key-file={key}",
                               f"--pid-file={self.root / 'run/munged.pid'}",
                               f"--seed-file={self.root / 'run/munged.seed'}",
                               f"--log-file={self.root / 'log/munged.log'}"], "munged.out")
        wait_for("munged", self.socket.exists, logs=self._logs())

    def _start_mariadb(self) -> None:
        """A private MariaDB for slurmdbd: its data dir here, TCP on 127.0.0.1 only, no accounts."""
        data = self.root / "db"  # empty: InnoDB creates its files; no grant tables are needed
        self._spawn("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={data}", "--user=root",
                                 "--bind-address=127.0.0.1", f"--port={self.ports['mysql']}",
                                 f"--socket={self.root / 'run/mysqld.sock'}", "--skip-grant-tables",
                                 "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=8M",
                                 f"--pid-file={self.root / 'run/mariadbd.pid'}"], "mariadbd.log")
        wait_for("mariadbd", lambda: self._listening(self.ports["mysql"]), logs=self._logs())

    def _write_configs(self) -> None:
        r, p = self.root, self.ports
        # cred_expire also delays the restart of a requeued job (default 120 s)
        auth = f"AuthType=auth/munge\nAuthInfo=socket={self.socket},cred_expire={CRED_EXPIRE_S}\n"
        memory = _memory_mb() - 1024
        self.conf.write_text(
            f"ClusterName=nsttest\nSlurmctldHost={self.node}(127.0.0.1)\nSlurmUser=root\nSlurmdUser=root\n"
            f"SlurmctldPort={p['ctld']}\nSlurmdPort={p['slurmd']}\n{auth}CredType=cred/munge\n"
            f"StateSaveLocation={r}/state\nSlurmdSpoolDir={r}/spool\n"
            f"SlurmctldPidFile={r}/run/slurmctld.pid\nSlurmdPidFile={r}/run/slurmd.pid\n"
            f"SlurmctldLogFile={r}/log/slurmctld.log\nSlurmdLogFile={r}/log/slurmd.log\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSelectType=select/cons_tres\n"
            "SelectTypeParameters=CR_Core\nMpiDefault=none\nReturnToService=2\nSchedulerType=sched/backfill\n"
            "JobAcctGatherType=jobacct_gather/none\nJobCompType=jobcomp/none\n"
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\n"
            f"AccountingStoragePort={p['dbd']}\nAccountingStoragePass={self.socket}\nMailProg=/bin/true\n"
            # a cancelled or requeued job gets SIGTERM, then SIGKILL this many seconds later
            "KillWait=30\nInactiveLimit=0\nMinJobAge=300\nSchedulerParameters=sched_interval=2\n"
            f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory={memory} State=UNKNOWN\n"
            f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n")
        dbd = r / "slurmdbd.conf"  # slurmdbd reads it next to $SLURM_CONF; it must be private
        dbd.write_text(
            f"{auth}DbdHost=localhost\nDbdAddr=127.0.0.1\nDbdPort={p['dbd']}\nSlurmUser=root\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={p['mysql']}\n"
            f"StorageUser=root\nStorageLoc=slurm_acct_db\nPidFile={r}/run/slurmdbd.pid\n"
            f"LogFile={r}/log/slurmdbd.log\n")
        dbd.chmod(0o600)

    def _spawn(self, name: str, argv: list[str], log_name: str) -> None:
        out = open(self.root / "log" / log_name, "ab")  # noqa: SIM115 - the daemon keeps it
        self.procs[name] = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()

    def _logs(self) -> tuple[Path, ...]:
        return tuple(sorted((self.root / "log").glob("*")))

    @staticmethod
    def _listening(port: int) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    def _node_idle(self) -> bool:
        return self.run("sinfo", "-h", "-N", "-o", "%T", check=False).strip() == "idle"

    def _registered(self) -> bool:
        return "nsttest" in self.run("sacctmgr", "-n", "-P", "list", "cluster", "format=cluster", check=False)

    # --- stop ------------------------------------------------------------------------------
    def stop(self) -> None:
        """Cancel what is left in the queue, then stop each daemon started here, by its PID."""
        if "slurmctld" in self.procs and self.queue():
            self.run("scancel", "--full", *self.queue(), check=False)
            with suppress(RuntimeError):
                wait_for("queue empty", lambda: not self.queue(), timeout=45)
        for name in reversed(list(self.procs)):
            proc = self.procs.pop(name)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


def _memory_mb() -> int:
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"MemTotal:\s+(\d+)", text)[1]) // 1024


@contextmanager
def local_slurm(root: Path) -> Iterator[LocalSlurm]:
    """A running cluster for the ``with`` block; its daemons are stopped whatever happens."""
    cluster = LocalSlurm(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
