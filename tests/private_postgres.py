"""A private PostgreSQL cluster, for tests that restart or stop PostgreSQL.

The shared PostgreSQL server is in use by other tests and other runs at the
same time: a test that kills or restarts a service starts a private instance on
another port rather than touching the shared one. `private_postgres()` creates
a cluster in a temporary directory (`initdb`: trust authentication, superuser
`postgres`), starts it with `pg_ctl` on a free port of 127.0.0.1 (its socket
in that directory too), creates one database, and at the end stops the cluster
and removes the directory.

PostgreSQL refuses to run as root: as root, its programs run as the `postgres`
OS user, who owns the directory. Without PostgreSQL's server programs, or
without that user, the test is skipped with the reason (a failure with
REQUIRE_SERVICES=1, as for a service that is not configured: tests/conftest.py).
"""

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

PROGRAMS = ("initdb", "pg_ctl")
PG_CTL_TIMEOUT = 60  # seconds pg_ctl waits for a start, stop or restart to complete
START_ATTEMPTS = 5  # another process may take the free port before the cluster does


def unavailable(reason: str) -> None:
    """Skip the test for `reason`; with REQUIRE_SERVICES=1, fail it (tests/conftest.py's rule)."""
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(f"REQUIRE_SERVICES=1 but this test {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _version(bindir: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name))


def find_bindir() -> Path | None:
    """The directory of PostgreSQL's server programs: the highest version in
    /usr/lib/postgresql (Debian, Ubuntu), else `pg_config --bindir`, else PATH."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version, reverse=True)
    if pg_config := shutil.which("pg_config"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=10)
            candidates.append(Path(bindir.stdout.strip()))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if all(os.access(bindir / program, os.X_OK) for program in PROGRAMS):
            return bindir
    return None


class PrivatePostgres:
    """One cluster in its own directory, on its own port."""

    def __init__(self, bindir: Path, dbname: str = "realtime"):
        self.bindir = bindir
        self.dbname = dbname
        self.port: int | None = None
        self.directory: Path | None = None
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")  # KeyError: no such user
            self.as_owner = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
            self.owner = (owner.pw_uid, owner.pw_gid)
        else:
            self.as_owner, self.owner = {}, None

    @property
    def url(self) -> str:
        """The database as a DATABASE_URL."""
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.dbname}"

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    def run(self, program: str, *args: str) -> subprocess.CompletedProcess:
        """One of PostgreSQL's programs, as the cluster's owner; its output on failure."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}  # no PGDATA, PGPORT... of the caller
        result = subprocess.run(
            [str(self.bindir / program), *args],
            cwd=self.directory,  # the owner may not be allowed into the caller's directory
            env={**env, "LC_ALL": "C"},
            capture_output=True,
            text=True,
            timeout=PG_CTL_TIMEOUT + 30,
            **self.as_owner,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} exited with {result.returncode}:\n{result.stdout}{result.stderr}\n"
                f"{self.log_path.read_text() if self.log_path.exists() else ''}"
            )
        return result

    def pg_ctl(self, action: str, *args: str) -> None:
        # -l on every start: without it the server would write to (and hold open) pg_ctl's output.
        self.run(
            "pg_ctl", action, "-D", str(self.data), "-l", str(self.log_path), "-w", "-t", str(PG_CTL_TIMEOUT), *args
        )

    def start(self) -> "PrivatePostgres":
        self.directory = Path(tempfile.mkdtemp(prefix="private-postgres-"))
        if self.owner:
            os.chown(self.directory, *self.owner)
        # A throwaway cluster: no fsync (it is removed, never recovered from a crash).
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale", "-N")
        for attempt in range(START_ATTEMPTS):
            self.port = free_port()
            options = f"-p {self.port} -h 127.0.0.1 -k {self.directory} -c fsync=off -c full_page_writes=off"
            try:
                self.pg_ctl("start", "-o", options)
                break
            except RuntimeError:
                if attempt == START_ATTEMPTS - 1:
                    raise
        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        return self

    def restart(self) -> None:
        """Stop (fast: every session is ended) and start again on the same port and
        options; returns once the cluster accepts connections again."""
        self.pg_ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if self.directory is None:
            return
        try:
            if (self.data / "postmaster.pid").exists():
                self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", str(PG_CTL_TIMEOUT))
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None


@contextlib.contextmanager
def private_postgres(dbname: str = "realtime") -> Iterator[PrivatePostgres]:
    """A started private cluster with an empty database `dbname`; stopped and removed on exit.

    Skips the test (fails it with REQUIRE_SERVICES=1) when no cluster can be made here.
    """
    bindir = find_bindir()
    if bindir is None:
        unavailable(
            "needs PostgreSQL's server programs (initdb, pg_ctl) for a private cluster: "
            "none in /usr/lib/postgresql/*/bin, at pg_config --bindir or on PATH"
        )
    try:
        cluster = PrivatePostgres(bindir, dbname)
    except KeyError:
        unavailable("needs a `postgres` OS user to run a private PostgreSQL cluster as (PostgreSQL refuses root)")
    try:
        yield cluster.start()
    finally:
        cluster.stop()
