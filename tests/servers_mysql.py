"""A real MariaDB server from Debian's binaries, in a temp dir, on a free loopback port.

``mariadb-install-db`` creates the data dir once; ``mariadbd`` serves it with small InnoDB
settings, no binary log and no fsync per commit, so it starts in about a second.
``durable=True`` (the benchmarks) keeps InnoDB's default durability instead
(``innodb_flush_log_at_trx_commit=1``: the redo log is flushed to disk at every commit), as
Debian's package runs it. A user
``tenure`` with a password is created, so the URL carries a password and its redaction is
tested for real (no skip-grant-tables). ``max_connections`` lets a test start a server with a low
connection limit. ``restart()`` serves the same data dir on the same port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from tests.servers import ServerProcess, free_port, wait_for_port

USER = "tenure"
PASSWORD = "tenure-test-pw"
DATABASE = "tenure"


class MariaDBServer(ServerProcess):
    """One mariadbd; ``url`` is ``mysql://tenure:<password>@127.0.0.1:PORT/tenure``."""

    def __init__(
        self, directory: Path, *, port: int | None = None, durable: bool = False, max_connections: int = 500
    ) -> None:
        server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        install = shutil.which("mariadb-install-db")
        if not os.path.exists(server) or install is None:
            raise RuntimeError("MariaDB is not installed (apt-get install -y mariadb-server)")
        self.binary = server
        self.install = install
        self.directory = directory
        self.datadir = directory / "data"
        self.socket = directory / "mariadb.sock"
        self.port = port or free_port()
        self.durable = durable
        self.max_connections = max_connections
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"mysql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{DATABASE}"

    def start(self) -> MariaDBServer:
        fresh = not self.datadir.exists()
        if fresh:
            subprocess.run(
                [self.install, "--no-defaults", f"--datadir={self.datadir}", "--user=root",
                 "--auth-root-authentication-method=socket", "--skip-test-db"],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
        args = [
            self.binary,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--user=root",  # the tests run as root; mariadbd refuses root without this
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket}",
            f"--pid-file={self.directory / 'mariadb.pid'}",
            f"--log-error={self.directory / 'error.log'}",
            "--skip-log-bin",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            f"--innodb-flush-log-at-trx-commit={1 if self.durable else 2}",
            f"--max-connections={self.max_connections}",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._set_up(fresh)
        except BaseException:
            self.kill()  # a server whose set-up failed must not outlive the test
            raise
        return self

    def _set_up(self, fresh: bool) -> None:
        assert self.proc is not None
        wait_for_port(self.port, timeout=60, proc=self.proc)
        if fresh:
            self.sql(
                f"CREATE DATABASE IF NOT EXISTS {DATABASE};"
                f"CREATE USER IF NOT EXISTS '{USER}'@'%' IDENTIFIED BY '{PASSWORD}';"
                f"GRANT ALL ON {DATABASE}.* TO '{USER}'@'%';"
                # KILL QUERY of one's own sessions needs no privilege; of others', this one.
                f"GRANT CONNECTION ADMIN ON *.* TO '{USER}'@'%';"
            )

    def sql(self, statements: str) -> str:
        """Run ``statements`` as root over the unix socket; return the client's output.

        Retried for a few seconds: the TCP port can open before the socket serves (seen on a
        loaded machine just after a start).
        """
        deadline = time.monotonic() + 15
        while True:
            result = subprocess.run(
                ["mariadb", "--no-defaults", f"--socket={self.socket}", "-uroot", "-N", "-e", statements],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if result.returncode == 0:
                return result.stdout
            if time.monotonic() > deadline:
                raise RuntimeError(f"mariadb client failed ({result.returncode}): {result.stderr.strip()}")
            time.sleep(0.2)

    def restart(self) -> None:
        """Kill the server and serve the same data dir on the same port (every session ends)."""
        self.kill()
        self.start()
