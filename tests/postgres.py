"""A PostgreSQL server on localhost for a test: Debian's binaries, run as the ``postgres`` user."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from conftest import needs


class Server:
    """A running server: its URL (with the password, when it has one), and how to stop and start it."""

    def __init__(self, password: str | None):
        binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not binaries or shutil.which("runuser") is None:
            needs("PostgreSQL is not installed (Debian package postgresql); .ci/run installs it")
        self.bin_dir = binaries[-1].parent
        self.data = Path(tempfile.mkdtemp(prefix="bench-postgres-"))  # pytest's folders are closed to other users
        shutil.chown(self.data, "postgres")
        with socket.socket() as probe:  # a free port
            probe.bind(("localhost", 0))
            self.port = probe.getsockname()[1]
        login = "postgres" + (f":{password}" if password else "")
        self.url = f"postgresql://{login}@localhost:{self.port}/postgres"
        setup = [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres"]
        if password:
            secret = Path(tempfile.mkstemp(prefix="bench-postgres-password-")[1])  # initdb wants an empty folder
            secret.write_text(password)
            shutil.chown(secret, "postgres")
            setup += ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={secret}"]
        else:
            setup += ["--auth=trust"]
        try:
            self._as_postgres(*setup)
        finally:
            if password:
                secret.unlink()
        self.start()

    def _as_postgres(self, *args) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True, capture_output=True, text=True)

    def start(self) -> None:
        self._as_postgres(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.data / "log"),
                          "-o", f"-p {self.port} -k {self.data} -c listen_addresses=localhost", "start")

    def stop(self) -> None:
        self._as_postgres(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")

    def dump(self) -> str:
        """Every row of every table, as SQL (``pg_dump`` over the local socket)."""
        out = subprocess.run(["runuser", "-u", "postgres", "--", str(self.bin_dir / "pg_dump"), "-h", str(self.data),
                              "-p", str(self.port), "-U", "postgres", "postgres"],
                             check=True, capture_output=True, text=True)
        return out.stdout


@contextlib.contextmanager
def postgres(password: str | None = None):
    """A fresh server for the block; removed after it."""
    server = Server(password)
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()
        shutil.rmtree(server.data, ignore_errors=True)
