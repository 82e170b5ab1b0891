"""The hub store on a real PostgreSQL (a throwaway cluster on loopback, started by a fixture)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

from metro_app.samples import make_image, make_metrics
from metro_app.store import Store
from metro_app.views import Views

pytestmark = pytest.mark.integration

__all__ = ["PostgresCluster", "postgres_url"]


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))[-1:]
    return found if isinstance(found, str) else (found[0] if found else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """initdb + pg_ctl on a free loopback port; as root, the server runs as the `postgres` user."""

    def __init__(self) -> None:
        initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not (initdb and pg_ctl):
            pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="edge-mnist-pg-"))
        self.root.chmod(0o755)
        self.data = self.root / "data"
        self.port = _free_port()
        self.runas: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root and there is no 'postgres' user: apt-get install postgresql")
            self.runas = ["runuser", "-u", "postgres", "--"]
            os.chown(self.root, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        proc = subprocess.run([*self.runas, *cmd], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stdout[-1000:]} {proc.stderr[-1000:]}")

    def start(self) -> PostgresCluster:
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        opts = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        )
        self._run(
            self.pg_ctl, "-D", str(self.data), "-o", opts, "-l", str(self.root / "pg.log"), "-w", "start"
        )
        return self

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def fresh_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"


@pytest.fixture(scope="session")
def postgres():
    pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'psycopg[binary]'")
    cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


def postgres_url(postgres: PostgresCluster, name: str) -> str:
    return postgres.fresh_database(name)


def test_store_on_postgresql_is_idempotent(postgres):
    store = Store(postgres.fresh_database("idem"))
    metrics = [make_metrics("CamA", i) for i in range(5)]
    images = [make_image("CamA", i) for i in range(5)]
    assert store.write_batch(metrics, images).images == 5
    again = store.write_batch(metrics, images)
    assert (again.metrics, again.images) == (0, 0)
    assert store.counts()["metrics"] == 5 and store.counts()["images"] == 5
    [(_, img)] = store.images_page(0, 1)
    assert img == make_image("CamA", 0).to_dict() | {"timestamp": img["timestamp"]}
    store.close()


def test_concurrent_writers_never_let_a_reader_skip_a_row(postgres):
    url = postgres.fresh_database("concurrent")
    writers = [Store(url) for _ in range(3)]
    reader = Views(Store(url)).get("ClassificationMetrics")
    seen: list[str] = []
    done = threading.Event()

    def write(k: int, store: Store) -> None:
        for b in range(20):
            store.write_batch([make_metrics(f"Cam{k}", b * 5 + i) for i in range(5)], [])

    def read() -> None:
        after = 0
        while True:
            last = done.is_set()
            for seq, t in reader.page(after, 1000):
                seen.append(t["id"])
                after = seq
            if last:
                return

    threads = [threading.Thread(target=write, args=(k, s)) for k, s in enumerate(writers)]
    r = threading.Thread(target=read)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    r.join()
    assert len(seen) == len(set(seen)) == 300
