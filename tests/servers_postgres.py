"""Start a real PostgreSQL 15 server (and a PgBouncer in front of it) from Debian's binaries.

PostgreSQL refuses to run as root, and so does PgBouncer: both run as the ``postgres`` OS user,
in a private directory that user owns (the pytest temp dir of root is closed to other users, so
the data lives in a fresh directory under /dev/shm, or /tmp, removed by ``stop()``). The server
listens on a free loopback port with trust authentication, except for one role that needs a
password (``PASSWORD_USER``), to check that passwords never reach an error message. ``fsync``
is off: the tests kill the server on purpose, not the machine. ``durable=True`` (the benchmarks)
keeps PostgreSQL's default durability instead (``fsync``, ``synchronous_commit`` and
``full_page_writes`` on) with the data on disk, not in /dev/shm, as a production server runs.

``pause()`` and ``kill()`` reach the postmaster and every backend (freezing or killing only the
postmaster would leave the sessions serving), and ``restart()`` comes back on the same port with
the same data directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.servers import ServerProcess, free_port, wait_for_port

BINDIR = Path("/usr/lib/postgresql/15/bin")
OS_USER = "postgres"
PASSWORD_USER = "tenure_pw"
PASSWORD = "s3cret-never-shown"


def bindir() -> Path:
    """Return the folder of the server binaries (``pg_config --bindir``)."""
    if (BINDIR / "postgres").exists():
        return BINDIR
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = Path(subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip())
        if (found / "postgres").exists():
            return found
    raise RuntimeError("PostgreSQL server binaries not found (apt-get install -y postgresql)")


def _private_dir(prefix: str, *, on_disk: bool = False) -> Path:
    """Return a new directory owned by the ``postgres`` user (in memory unless ``on_disk``)."""
    base = "/dev/shm" if not on_disk and os.access("/dev/shm", os.W_OK) else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    account = pwd.getpwnam(OS_USER)
    os.chown(path, account.pw_uid, account.pw_gid)
    return path


def children_of(pid: int) -> list[int]:
    """Return the pids of the processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after it.
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


class _ServerTree(ServerProcess):
    """A server whose signals must reach its children too.

    PostgreSQL puts every backend in a process group of its own, so signalling the postmaster's
    group would miss them: the children are found by their parent pid instead.
    """

    def _signal_tree(self, sig: int) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pids = [self.proc.pid]
        if sig == signal.SIGCONT:
            pids = [*children_of(self.proc.pid), self.proc.pid]  # children first, then the parent
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig != signal.SIGCONT:
            # The parent stopped (or died) first, so no new child appears meanwhile.
            for pid in children_of(self.proc.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    def pause(self) -> None:
        """Freeze the postmaster and every backend: nothing answers, sockets stay open."""
        self._signal_tree(signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw every process of the server."""
        self._signal_tree(signal.SIGCONT)

    def kill(self) -> None:
        """Kill -9 every process of the server: no goodbye to any client."""
        if self.proc is not None and self.proc.poll() is None:
            children = children_of(self.proc.pid)
            self._signal_tree(signal.SIGCONT)
            for pid in [self.proc.pid, *children]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait()
            deadline = time.monotonic() + 5
            while any(Path(f"/proc/{pid}").exists() for pid in children) and time.monotonic() < deadline:
                time.sleep(0.01)


class PostgresServer(_ServerTree):
    """One PostgreSQL server on 127.0.0.1, trust auth, superuser ``postgres``, database ``postgres``."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        durable: bool = False,
        max_connections: int = 400,
        max_locks: int = 64,
    ) -> None:
        self.bindir = bindir()
        self.durable = durable
        # Session advisory locks live in the server's shared lock table, which has room for
        # max_locks x max_connections locks: many held locks with few connections need more.
        self.max_connections, self.max_locks = max_connections, max_locks
        self.workdir = workdir  # the fixture interface; the files live in self.home (see above)
        self.port = port or free_port()
        self.home: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._first_start = False  # the password role is created once the new cluster serves

    @property
    def url(self) -> str:
        return f"postgresql://{OS_USER}@127.0.0.1:{self.port}/postgres"

    @property
    def password_url(self) -> str:
        """A URL with a password (the role needs it), to test that it is never shown."""
        return f"postgresql://{PASSWORD_USER}:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        assert self.home is not None
        return self.home / "data"

    def start(self) -> PostgresServer:
        if self.home is None:
            self._initdb()
        assert self.home is not None
        args = [
            str(self.bindir / "postgres"),
            "-D", str(self.data),
            "-p", str(self.port),
            "-k", str(self.home),  # the unix socket, in our private dir
            "-c", "listen_addresses=127.0.0.1",
            *([] if self.durable else ["-c", "fsync=off", "-c", "full_page_writes=off"]),
            "-c", f"max_connections={self.max_connections}",
            "-c", f"max_locks_per_transaction={self.max_locks}",
            "-c", "shared_buffers=64MB",
            "-c", "log_min_messages=warning",
            "-c", "log_connections=off",
        ]  # fmt: skip
        log = (self.home / "postgres.log").open("ab")
        self.proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, user=OS_USER, start_new_session=True, cwd=self.home
        )
        log.close()
        wait_for_port(self.port, timeout=30, proc=self.proc)
        self._wait_ready()
        return self

    def _initdb(self) -> None:
        self.home = _private_dir("tenure-pg-", on_disk=self.durable)
        argv = [
            str(self.bindir / "initdb"),
            "-D", str(self.data),
            "-U", OS_USER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, user=OS_USER, cwd=self.home, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        hba = self.data / "pg_hba.conf"
        hba.write_text(
            f"local all all trust\n"
            f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n"
            f"host all all 127.0.0.1/32 trust\n"
        )
        self._first_start = True

    def _wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the server accepts sessions (it listens before recovery ends)."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2, autocommit=True) as conn:
                    if self._first_start:
                        conn.execute(f"CREATE ROLE {PASSWORD_USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
                        self._first_start = False
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """Shut down fast (every session ends), and remove the data directory."""
        self.shutdown()
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    def shutdown(self) -> None:
        """Fast shutdown (SIGINT): every session is ended, the data stays for a restart."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def restart(self) -> None:
        """Shut the server down and start it again on the same port with the same data."""
        self.shutdown()
        self.start()

    def psql(self, sql: str) -> str:
        """Run ``sql`` as the superuser over the unix socket; return what psql printed."""
        assert self.home is not None
        argv = [str(self.bindir / "psql"), "-h", str(self.home), "-p", str(self.port), "-U", OS_USER,
                "-d", "postgres", "-XAtq", "-c", sql]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, user=OS_USER, timeout=30, check=True)
        return done.stdout


class PgBouncer(_ServerTree):
    """A PgBouncer in front of ``server``, in ``pool_mode`` (``transaction`` or ``session``)."""

    def __init__(self, server: PostgresServer, *, pool_mode: str) -> None:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            raise RuntimeError("pgbouncer is not installed (apt-get install -y pgbouncer)")
        self.binary = binary
        self.server = server
        self.pool_mode = pool_mode
        self.port = free_port()
        self.home = _private_dir("tenure-pgbouncer-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://{OS_USER}@127.0.0.1:{self.port}/postgres"

    def start(self) -> PgBouncer:
        (self.home / "users.txt").write_text(f'"{OS_USER}" ""\n')
        config = [
            "[databases]",
            f"* = host=127.0.0.1 port={self.server.port}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {self.home / 'users.txt'}",
            f"pool_mode = {self.pool_mode}",
            "default_pool_size = 4",
            f"logfile = {self.home / 'pgbouncer.log'}",
            f"pidfile = {self.home / 'pgbouncer.pid'}",
        ]
        ini = self.home / "pgbouncer.ini"
        ini.write_text("\n".join(config) + "\n")
        for path in self.home.iterdir():
            os.chown(path, pwd.getpwnam(OS_USER).pw_uid, pwd.getpwnam(OS_USER).pw_gid)
        self.proc = subprocess.Popen(
            [self.binary, str(ini)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            user=OS_USER,
            start_new_session=True,
        )
        wait_for_port(self.port, timeout=10, proc=self.proc)
        return self

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.home, ignore_errors=True)
