"""Where the tests get a real Postgres from.

Order: the server named by ``VIDJOBS_TEST_DATABASE_URL``; else ``postgres:16`` (or the image
``VIDJOBS_TEST_POSTGRES_IMAGE`` names) through testcontainers when a Docker engine answers; else
an embedded PostgreSQL 16 (``pgserver`` binaries) that this module starts and stops by itself.
A test that must stop and start its server (chaos, start order) gets one of its own from
:func:`private_postgres`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from vidjobs.devstack.embedded import EmbeddedPostgres

__all__ = [
    "RestartablePostgres",
    "clone_database",
    "create_empty_database",
    "docker_answers",
    "drop_database",
    "postgres_server_url",
    "private_postgres",
    "restartable_postgres",
]


def docker_answers() -> bool:
    """True when a Docker engine answers a ping within 2 s."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        # Without this, the docker client leaks a socket whose ResourceWarning fails a test.
        return False
    try:
        import docker

        client = docker.from_env(timeout=2)
        try:
            client.ping()
        finally:
            client.close()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def postgres_server_url() -> Iterator[str]:
    """Yield a superuser URL of a Postgres server for the whole test session."""
    external = os.environ.get("VIDJOBS_TEST_DATABASE_URL")
    if external:
        yield external
        return
    if docker_answers():
        with _container_postgres() as url:
            yield url
        return
    with tempfile.TemporaryDirectory(prefix="vidjobs-test-pg-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "data", durable=False)
        server.start()
        try:
            yield server.url
        finally:
            server.stop("immediate")


@contextlib.contextmanager
def _container_postgres() -> Iterator[str]:
    """Postgres through testcontainers: the image ``VIDJOBS_TEST_POSTGRES_IMAGE`` names.

    ``VIDJOBS_TEST_DOCKER_NETWORK=host`` runs it in the host's network on a free loopback port,
    for an engine without a bridge (the one ``make deploy-test`` starts, whose locally built
    ``vidjobs-test/postgres:16`` stands in for ``postgres:16``); else testcontainers maps the port.
    """
    image = os.environ.get("VIDJOBS_TEST_POSTGRES_IMAGE", "postgres:16")
    if os.environ.get("VIDJOBS_TEST_DOCKER_NETWORK") != "host":
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer(image, driver=None) as pg:
            yield pg.get_connection_url()
        return
    from testcontainers.core.container import DockerContainer

    from tests.support.waiting import wait_for
    from vidjobs.devstack.embedded import free_port

    port = free_port()
    url = f"postgresql://postgres:test@127.0.0.1:{port}/postgres"
    container = DockerContainer(
        image,
        command=f"postgres -c listen_addresses=127.0.0.1 -c port={port} -c fsync=off"
        " -c max_connections=200",
        env={"POSTGRES_PASSWORD": "test"},
        network_mode="host",
    )

    def answers() -> bool:
        try:
            psycopg.connect(url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    with container:
        wait_for(answers, 60, f"Postgres from {image} answers on port {port}", every=0.2)
        yield url


def _with_db(url: str, dbname: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = dbname
    return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})


def clone_database(server_url: str, template: str, name: str) -> str:
    """Create database ``name`` from ``template`` and return its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return _with_db(server_url, name)


def drop_database(server_url: str, name: str) -> None:
    """Drop ``name``, disconnecting whoever still uses it."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def create_empty_database(server_url: str, name: str) -> str:
    """Create an empty database ``name`` and return its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_db(server_url, name)


@contextlib.contextmanager
def private_postgres(*, durable: bool, port: int | None = None) -> Iterator[EmbeddedPostgres]:
    """An embedded Postgres of one test alone, not started yet; stopped and removed afterwards.

    Its data lives under the system temp dir, not pytest's ``tmp_path``: every pytest session
    (others may run at once) resets ``pytest-of-<user>`` to mode 0700, which locks out the
    unprivileged user the server runs as when the tests run as root.
    """
    tmp = tempfile.TemporaryDirectory(prefix="vidjobs-own-pg-")
    server = EmbeddedPostgres(Path(tmp.name) / "data", port=port, durable=durable)
    try:
        yield server
    finally:
        try:
            server.stop("immediate")
        finally:
            tmp.cleanup()


@dataclass
class RestartablePostgres:
    """A durable Postgres of one test alone, with a migrated ``vidjobs`` database at ``url``."""

    server: EmbeddedPostgres
    url: str

    def stop(self) -> None:
        """Fast shutdown: open transactions abort, connections drop, data stays."""
        self.server.stop("fast")

    def start(self) -> None:
        """Start again on the same data directory and port."""
        self.server.start()


@contextlib.contextmanager
def restartable_postgres() -> Iterator[RestartablePostgres]:
    """A running Postgres the test may stop and start (``durable``: fsync on, like production)."""
    from vidjobs.db.migrate import migrate

    with private_postgres(durable=True) as server:
        server.start()
        url = create_empty_database(server.url, "vidjobs")
        migrate(url)
        yield RestartablePostgres(server, url)
