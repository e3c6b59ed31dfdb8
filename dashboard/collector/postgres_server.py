"""A PostgreSQL server of the project's own, for development and tests: ``initdb`` into a folder, served on
127.0.0.1 only.

``PostgresServer(folder, port)`` keeps everything under ``folder``: ``data/`` (the cluster, with its unix socket),
``server.log`` and ``pgpass`` (the generated password of the ``edgemed`` role, 0600, read by libpq through the
URL's ``passfile``: the URL itself holds no secret). ``start()`` initialises the folder on first use, starts the
server (``pg_ctl``), creates the database and returns its URL; ``stop()`` shuts it down (fast mode: open
transactions roll back, committed data stays). Authentication is scram-sha-256 on TCP and on the socket.

PostgreSQL refuses to run as root: when this process is root, ``initdb`` and the server run as the ``postgres``
system user (Debian's package creates it; ``nobody`` otherwise), which then owns ``folder`` and must be able to
reach it. The binaries are Debian's (``/usr/lib/postgresql/<version>/bin``), ``$EDGEMED_POSTGRES_BIN``, or on the
``PATH``; ``install_binaries`` installs Debian's package when root.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from runtime.errors import EdgemedError

logger = logging.getLogger(__name__)

DEFAULT_FOLDER = Path(".postgres")  # the project's server (git-ignored)
DEFAULT_PORT = 5433  # beside a system PostgreSQL's 5432
DEFAULT_ROLE = "edgemed"
DEFAULT_DATABASE = "edgemed"
BINARIES_VARIABLE = "EDGEMED_POSTGRES_BIN"
DEBIAN_ROOT = Path("/usr/lib/postgresql")
DEBIAN_PACKAGES = ("postgresql-15", "postgresql")  # the tested major version first, then Debian's default
SERVICE_USERS = ("postgres", "nobody")  # who runs the server when we are root
START_TIMEOUT_S = 60
COMMAND_TIMEOUT_S = 120
# For throwaway test servers only: no fsync, so a crash may lose the cluster (tests start a new one anyway).
NON_DURABLE = ("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")


class PostgresServerError(EdgemedError):
    """The project's PostgreSQL server cannot be found, installed, initialised, started or stopped."""


def find_binaries() -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: ``$EDGEMED_POSTGRES_BIN``, the ``PATH``,
    then Debian's newest ``/usr/lib/postgresql/<version>/bin``; None when there is none."""
    candidates = []
    if os.environ.get(BINARIES_VARIABLE):
        candidates.append(Path(os.environ[BINARIES_VARIABLE]))
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    if DEBIAN_ROOT.is_dir():
        versions = [folder for folder in DEBIAN_ROOT.iterdir() if folder.name.isdigit()]
        candidates.extend(folder / "bin" for folder in sorted(versions, key=lambda folder: -int(folder.name)))
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def install_binaries() -> Path:
    """Install Debian's PostgreSQL (root only) and return its binaries' folder, or ``PostgresServerError``."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PostgresServerError("PostgreSQL's server binaries (initdb, pg_ctl, postgres) are not installed",
                                  expected=f"Debian's package in {DEBIAN_ROOT}/<version>/bin, or ${BINARIES_VARIABLE}",
                                  fix="sudo apt-get install postgresql-15")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    failures = []
    for command in (["apt-get", "update", "-qq"], *(["apt-get", "install", "-y", "-qq", package]
                                                     for package in DEBIAN_PACKAGES)):
        result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=900, check=False)
        if result.returncode:
            failures.append(f"{' '.join(command)}: {result.stderr.strip()[-300:]}")
        elif command[1] == "install" and find_binaries():
            break
    binaries = find_binaries()
    if binaries is None:
        raise PostgresServerError("installing PostgreSQL with apt-get failed: " + "; ".join(failures),
                                  fix="install postgresql-15 by hand")
    return binaries


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class _Account:
    name: str
    uid: int
    gid: int


def service_account() -> _Account | None:
    """Who runs ``initdb`` and the server: None (this process's user) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in SERVICE_USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _Account(name, entry.pw_uid, entry.pw_gid)
    raise PostgresServerError("PostgreSQL refuses to run as root and there is no postgres or nobody user",
                              fix="create a postgres system user, or run as an unprivileged user")


def reachable(path: Path, account: _Account | None) -> bool:
    """Whether ``account`` can traverse every folder above ``path`` (always, for this process's own user)."""
    if account is None:
        return True
    groups = {account.gid, *(group for group in os.getgrouplist(account.name, account.gid))}
    for folder in Path(path).resolve().parents:
        mode = folder.stat()
        if mode.st_uid == account.uid:
            allowed = mode.st_mode & stat.S_IXUSR
        elif mode.st_gid in groups:
            allowed = mode.st_mode & stat.S_IXGRP
        else:
            allowed = mode.st_mode & stat.S_IXOTH
        if not allowed:
            return False
    return True


class PostgresServer:
    """The server whose cluster lives in ``folder``, listening on 127.0.0.1:``port``."""

    def __init__(self, folder: Path | str = DEFAULT_FOLDER, port: int = DEFAULT_PORT, *, durable: bool = True,
                 binaries: Path | None = None, role: str = DEFAULT_ROLE, database: str = DEFAULT_DATABASE) -> None:
        self.folder = Path(folder).resolve()
        self.port = port
        self.durable = durable  # False: fsync off, for throwaway test servers
        self.binaries = binaries
        self.role = role
        self.database = database
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.passfile = self.folder / "pgpass"

    def url(self, database: str | None = None) -> str:
        """The libpq URL of ``database`` (default: the project's); the password stays in ``passfile``."""
        return (f"postgresql://{quote(self.role)}@127.0.0.1:{self.port}/{quote(database or self.database)}"
                f"?passfile={quote(str(self.passfile))}&sslmode=disable")

    # -- running the binaries ----------------------------------------------------------------------------------

    def _binaries(self) -> Path:
        if self.binaries is None:
            self.binaries = find_binaries()
        if self.binaries is None:
            raise PostgresServerError("PostgreSQL's server binaries (initdb, pg_ctl, postgres) are not installed",
                                      expected=f"Debian's package in {DEBIAN_ROOT}/<version>/bin",
                                      fix="sudo apt-get install postgresql-15 (or make postgres as root)")
        return self.binaries

    def _run(self, program: str, *arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        account = service_account()
        user = {} if account is None else {"user": account.uid, "group": account.gid, "extra_groups": []}
        try:
            result = subprocess.run([str(self._binaries() / program), *arguments], capture_output=True, text=True,
                                    cwd=self.folder, timeout=COMMAND_TIMEOUT_S, check=False, **user)
        except subprocess.TimeoutExpired:
            raise PostgresServerError(f"{program} did not finish in {COMMAND_TIMEOUT_S} s",
                                      fix=f"see {self.log}") from None
        if check and result.returncode:
            raise PostgresServerError(
                f"{program} failed with exit code {result.returncode}: {(result.stderr or result.stdout).strip()}"
                + self._log_tail(), fix=f"see {self.log}; remove {self.folder} to start from scratch")
        return result

    def _log_tail(self, lines: int = 8) -> str:
        try:
            tail = self.log.read_text(errors="replace").strip().splitlines()[-lines:]
        except OSError:
            return ""
        return " | server log: " + " / ".join(tail) if tail else ""

    # -- life cycle --------------------------------------------------------------------------------------------

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def initialise(self) -> bool:
        """``initdb`` into ``folder`` unless done before; whether it ran."""
        if self.initialised():
            return False
        if self.folder.is_dir() and any(self.folder.iterdir()):  # the server's user takes the folder over
            raise PostgresServerError(
                f"the folder {self.folder} already holds files and no PostgreSQL cluster ({self.data} has no "
                "PG_VERSION)", expected="a new or empty folder, which the server's user will own, or a folder "
                "`edgemed postgres start` initialised before",
                fix=f"choose another --folder, e.g. {self.folder / 'postgres'}")
        account = service_account()
        self.folder.mkdir(parents=True, exist_ok=True)
        if not reachable(self.folder, account):
            raise PostgresServerError(
                f"the server runs as the system user {account.name}, who cannot reach {self.folder}",
                expected="a folder whose parents other users may traverse (mode o+x)",
                fix="choose a folder under the project or /tmp")
        password = secrets.token_urlsafe(24)
        password_file = self.folder / ".initdb-password"
        password_file.write_text(password + "\n")
        password_file.chmod(0o600)
        if account is not None:
            os.chown(self.folder, account.uid, account.gid)
            os.chown(password_file, account.uid, account.gid)
        try:
            self._run("initdb", "-D", str(self.data), "-U", self.role, f"--pwfile={password_file}",
                      "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C",
                      *(() if self.durable else ("--no-sync",)))
        finally:
            password_file.unlink(missing_ok=True)
        with (self.data / "postgresql.conf").open("a") as configuration:
            configuration.write("\n# edgemed: this machine only; the socket beside the data\n"
                                "listen_addresses = '127.0.0.1'\n"
                                f"unix_socket_directories = '{self.data}'\n"
                                "# telemetry is write-heavy: fewer checkpoints, so fewer full-page images in the WAL\n"
                                "max_wal_size = '2GB'\n")
        descriptor = os.open(self.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as passfile:  # this process's user reads it (libpq insists on 0600)
            passfile.write(f"127.0.0.1:*:*:{self.role}:{password}\n")
        logger.info("initialised a PostgreSQL cluster in %s", self.data)
        return True

    def running(self) -> bool:
        return self.initialised() and self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def start(self) -> str:
        """Initialise if needed, start unless running, create the database; the database's URL."""
        self.initialise()
        if not self.running():
            options = " ".join(["-p", str(self.port), *(() if self.durable else NON_DURABLE)])
            self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                      "-t", str(START_TIMEOUT_S))
            logger.info("PostgreSQL on 127.0.0.1:%d (data in %s)", self.port, self.data)
        self.create_database(self.database)
        return self.url()

    def stop(self) -> None:
        """Shut the server down if it runs (fast: sessions are disconnected, committed data is kept)."""
        if self.running():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", str(START_TIMEOUT_S))
            logger.info("PostgreSQL in %s stopped", self.data)

    def create_database(self, name: str) -> str:
        """Create database ``name`` unless it exists; its URL."""
        import psycopg
        from psycopg import sql

        try:
            with psycopg.connect(self.url("postgres"), autocommit=True, connect_timeout=10) as connection:
                if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                    connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as error:
            raise PostgresServerError(f"cannot create database {name} on 127.0.0.1:{self.port}: {error}",
                                      fix=f"is the server in {self.folder} running on that port?") from error
        return self.url(name)

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exception: object) -> None:
        self.stop()
