"""A throwaway PostgreSQL cluster for the test suite.

``PgCluster`` runs ``initdb`` into a fresh temporary directory, starts a server listening on
127.0.0.1 only (on a free port, with its unix socket inside the temporary directory), and tears
everything down again in :meth:`PgCluster.stop` (also registered with :mod:`atexit`).

When running as root (as in CI containers), ``initdb`` and ``postgres`` refuse to run, so the
server binaries are started as the ``postgres`` OS user via ``runuser``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from glob import glob
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

__all__ = ["PgCluster", "find_pg_bin"]

_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_SERVER_USER = "postgres"  # OS user that runs the server when we are root
_DB_SUPERUSER = "postgres"  # database superuser created by initdb
_PORT_ATTEMPTS = 5
_START_TIMEOUT = 60  # seconds, pg_ctl -t
_CONNECT_TIMEOUT = 30.0  # seconds to wait for a first successful connection
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux; leave room for ".s.PGSQL.NNNNN"

_SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "deadlock_timeout": "100ms",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def _has_binaries(bindir: str | os.PathLike[str]) -> bool:
    return all(os.access(os.path.join(bindir, name), os.X_OK) for name in _REQUIRED_BINARIES)


def _version_key(path: str) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin -> numeric version tuple, so 15 sorts above 9.6
    version = Path(path).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version)) or (-1,)


def find_pg_bin() -> str | None:
    """Return the directory holding initdb/pg_ctl/postgres, or None if none can be found.

    Looks at ``$BULKOPS_PG_BIN`` (used as-is when set), then the highest version under
    ``/usr/lib/postgresql/*/bin``, then ``pg_config --bindir``.
    """
    env_bin = os.environ.get("BULKOPS_PG_BIN")
    if env_bin:
        return env_bin

    candidates = [d for d in glob("/usr/lib/postgresql/*/bin") if _has_binaries(d)]
    if candidates:
        return max(candidates, key=_version_key)

    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            result = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                check=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        bindir = result.stdout.strip()
        if bindir and _has_binaries(bindir):
            return bindir
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _world_traversable(path: str) -> bool:
    """True if every directory from / down to ``path`` can be entered by any user."""
    current = Path(path).resolve()
    for directory in (current, *current.parents):
        try:
            mode = directory.stat().st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


def _tail(path: str | os.PathLike[str], lines: int = 40) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "<no server log>"
    return "\n".join(text.splitlines()[-lines:]) or "<server log is empty>"


class PgCluster:
    """A disposable PostgreSQL server in a temporary directory.

    Usage::

        with PgCluster() as pg:
            psycopg.connect(pg.dsn)
    """

    dsn: str
    port: int
    datadir: str

    def __init__(self, bindir: str | None = None) -> None:
        self.bindir = bindir
        self.dsn = ""
        self.port = 0
        self.datadir = ""
        self.tmpdir: str | None = None
        self.logfile = ""
        self._run_as: str | None = None
        self._started = False

    # ------------------------------------------------------------------ helpers

    def _bin(self, name: str) -> str:
        assert self.bindir is not None
        return os.path.join(self.bindir, name)

    def _command(self, *args: str) -> list[str]:
        if self._run_as is None:
            return list(args)
        runuser = shutil.which("runuser") or "runuser"
        return [runuser, "-u", self._run_as, "--", *args]

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(
            self._command(*args),
            capture_output=True,
            text=True,
            cwd=self.tmpdir,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )

    def _prepare_user(self) -> tuple[int, int] | None:
        """Decide who runs the server; returns (uid, gid) to chown to when running as root."""
        if os.geteuid() != 0:
            self._run_as = None
            return None
        try:
            entry = pwd.getpwnam(_SERVER_USER)
        except KeyError:
            raise RuntimeError(
                f"running as root, but PostgreSQL refuses to run as root and there is no "
                f"{_SERVER_USER!r} OS user to run it as; create one (e.g. "
                f"`useradd --system {_SERVER_USER}`) or run the tests as a non-root user"
            ) from None
        if shutil.which("runuser") is None:
            raise RuntimeError(
                "running as root, but `runuser` (util-linux) is not available to start "
                f"PostgreSQL as the {_SERVER_USER!r} user"
            )
        self._run_as = _SERVER_USER
        return entry.pw_uid, entry.pw_gid

    def _make_tmpdir(self, owner: tuple[int, int] | None) -> str:
        parent: str | None = None
        default = tempfile.gettempdir()
        too_long = len(os.path.join(default, "bulkops-pg-xxxxxxxx")) > _SOCKET_PATH_MAX
        if too_long or (owner is not None and not _world_traversable(default)):
            parent = "/tmp"
        tmpdir = tempfile.mkdtemp(prefix="bulkops-pg-", dir=parent)
        if owner is not None:
            os.chown(tmpdir, *owner)
        return tmpdir

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> PgCluster:
        if self._started:
            return self
        if self.bindir is None:
            self.bindir = find_pg_bin()
        if self.bindir is None:
            raise RuntimeError(
                "no PostgreSQL binaries found; set BULKOPS_PG_BIN to the directory holding "
                "initdb/pg_ctl/postgres"
            )
        if not _has_binaries(self.bindir):
            raise RuntimeError(
                f"{self.bindir!r} does not contain executable {', '.join(_REQUIRED_BINARIES)}"
            )

        owner = self._prepare_user()
        self.tmpdir = self._make_tmpdir(owner)
        atexit.register(self.stop)
        self._started = True
        try:
            self._initdb()
            self._start_server()
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _initdb(self) -> None:
        assert self.tmpdir is not None
        self.datadir = os.path.join(self.tmpdir, "data")
        self.logfile = os.path.join(self.datadir, "server.log")
        result = self._run(
            self._bin("initdb"),
            "-D",
            self.datadir,
            "-U",
            _DB_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"initdb failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        settings = dict(_SERVER_SETTINGS)
        settings["unix_socket_directories"] = "'" + self.tmpdir.replace("'", "''") + "'"
        conf = os.path.join(self.datadir, "postgresql.conf")
        # Appending to the file initdb wrote keeps its ownership (postgres) intact.
        with open(conf, "a", encoding="utf-8") as fh:
            fh.write("\n# bulkops test-suite settings\n")
            for key, value in settings.items():
                fh.write(f"{key} = {value}\n")

    def _start_server(self) -> None:
        last_error = ""
        for _attempt in range(_PORT_ATTEMPTS):
            port = _free_port()
            result = self._run(
                self._bin("pg_ctl"),
                "-D",
                self.datadir,
                "-l",
                self.logfile,
                "-o",
                f"-p {port}",
                "-w",
                "-t",
                str(_START_TIMEOUT),
                "start",
                timeout=_START_TIMEOUT + 30,
            )
            if result.returncode == 0:
                self.port = port
                self.dsn = self.dsn_for("postgres")
                return
            log = _tail(self.logfile)
            last_error = (
                f"pg_ctl start failed (exit {result.returncode}) on port {port}:\n"
                f"{result.stdout}{result.stderr}\n--- tail of {self.logfile} ---\n{log}"
            )
            if "Address already in use" not in log and "could not bind" not in log:
                break
            # Someone grabbed the port between probing and binding; try another one.
        raise RuntimeError(last_error)

    def _wait_until_ready(self) -> None:
        import psycopg  # lazy: only needed when a server is actually started

        deadline = time.monotonic() + _CONNECT_TIMEOUT
        while True:
            try:
                with psycopg.connect(self.dsn, connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL did not accept connections at {self.dsn} within "
                        f"{_CONNECT_TIMEOUT:.0f}s: {exc}\n--- tail of {self.logfile} ---\n"
                        f"{_tail(self.logfile)}"
                    ) from exc
                time.sleep(0.1)

    def dsn_for(self, dbname: str) -> str:
        """DSN (libpq URI) of database ``dbname`` on this server."""
        return f"postgresql://{_DB_SUPERUSER}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    def create_database(self, name: str) -> str:
        """Create a fresh database ``name`` and return its DSN."""
        import psycopg
        from psycopg import sql

        if not self.dsn:
            raise RuntimeError("cluster is not running; call start() first")
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn_for(name)

    def stop(self) -> None:
        """Fast-shutdown the server and remove the temporary directory. Idempotent."""
        if not self._started:
            return
        self._started = False
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        try:
            if self.datadir and os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
                self._shutdown_server()
        finally:
            if self.tmpdir:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.dsn = ""

    def _shutdown_server(self) -> None:
        try:
            result = self._run(
                self._bin("pg_ctl"), "-D", self.datadir, "-m", "fast", "-w", "-t", "30", "stop"
            )
            stopped = result.returncode == 0
        except (OSError, subprocess.SubprocessError):
            stopped = False
        if stopped:
            return
        # pg_ctl failed (already stopped, or unusable at interpreter exit): signal the
        # postmaster directly (SIGINT = fast shutdown) if it is still around.
        pid = self._postmaster_pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGINT)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)

    def _postmaster_pid(self) -> int | None:
        try:
            first = Path(self.datadir, "postmaster.pid").read_text().splitlines()[0]
            pid = int(first.strip())
        except (OSError, IndexError, ValueError):
            return None
        # Guard against a stale pid file whose pid now belongs to an unrelated process.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return pid if not os.path.isdir("/proc") else None
        return pid if b"postgres" in cmdline else None

    # ---------------------------------------------------------- context manager

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self.port}" if self._started else "stopped"
        return f"<PgCluster {state} datadir={self.datadir!r}>"
