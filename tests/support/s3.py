"""Where the tests get a real S3 server from.

Order: the server named by ``VIDJOBS_TEST_S3_ENDPOINT`` (with ``VIDJOBS_TEST_S3_ACCESS_KEY`` /
``VIDJOBS_TEST_S3_SECRET_KEY``); else MinIO (or the image ``VIDJOBS_TEST_S3_IMAGE`` names)
through testcontainers when a Docker engine answers; else an embedded SeaweedFS (``weed mini``)
that this module starts and stops by itself. A test that must stop and start its S3 server gets
one of its own from :func:`private_s3`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from minio import Minio
from minio.deleteobjects import DeleteObject

from tests.support.postgres import docker_answers
from vidjobs.blobs import BlobSettings
from vidjobs.devstack.embedded import EmbeddedS3

__all__ = ["S3Server", "drop_bucket", "private_s3", "s3_server", "s3_settings_for"]


@dataclass(frozen=True)
class S3Server:
    """A running S3 endpoint and the credentials it accepts.

    Attributes:
        endpoint: ``host:port`` (no scheme).
        access_key / secret_key: credentials with the right to create buckets.
        secure: HTTPS when true.
        kind: ``external``, ``minio``, ``s3-container`` (the image of ``VIDJOBS_TEST_S3_IMAGE`` in
            the host's network) or ``seaweedfs`` (for test reports).
    """

    endpoint: str
    access_key: str
    secret_key: str
    secure: bool = False
    kind: str = "external"

    def client(self) -> Minio:
        """A plain SDK client, for assertions that bypass the code under test."""
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.secure,
            region="us-east-1",
        )


@contextlib.contextmanager
def s3_server() -> Iterator[S3Server]:
    """Yield an S3 server for the whole test session."""
    external = os.environ.get("VIDJOBS_TEST_S3_ENDPOINT")
    if external:
        secure = external.startswith("https://")
        yield S3Server(
            endpoint=external.removeprefix("https://").removeprefix("http://"),
            access_key=os.environ.get("VIDJOBS_TEST_S3_ACCESS_KEY", ""),
            secret_key=os.environ.get("VIDJOBS_TEST_S3_SECRET_KEY", ""),
            secure=secure or os.environ.get("VIDJOBS_TEST_S3_SECURE", "") == "1",
            kind="external",
        )
        return
    if docker_answers():
        with _container_s3() as server:
            yield server
        return
    with tempfile.TemporaryDirectory(prefix="vidjobs-test-s3-") as tmp:
        server = EmbeddedS3(Path(tmp) / "data")
        server.start()
        try:
            yield S3Server(server.endpoint, server.access_key, server.secret_key, kind="seaweedfs")
        finally:
            server.stop()


@contextlib.contextmanager
def _container_s3() -> Iterator[S3Server]:
    """MinIO through testcontainers, or the image ``VIDJOBS_TEST_S3_IMAGE`` names.

    ``VIDJOBS_TEST_DOCKER_NETWORK=host`` runs it in the host's network on a free loopback port,
    for an engine without a bridge (``make deploy-test``'s, whose ``vidjobs-test/minio:seaweedfs``
    answers ``minio server`` with SeaweedFS); else testcontainers maps the port.
    """
    from testcontainers.community.minio import MinioContainer

    image = os.environ.get("VIDJOBS_TEST_S3_IMAGE")
    if os.environ.get("VIDJOBS_TEST_DOCKER_NETWORK") != "host":
        with MinioContainer(image) if image else MinioContainer() as minio:
            host = minio.get_container_host_ip()
            port = minio.get_exposed_port(minio.port)
            yield S3Server(f"{host}:{port}", minio.access_key, minio.secret_key, kind="minio")
        return
    from testcontainers.core.container import DockerContainer

    from tests.support.waiting import wait_for
    from vidjobs.devstack.embedded import free_port

    port = free_port()
    image = image or "minio/minio:RELEASE.2025-04-22T22-12-26Z"
    server = S3Server(f"127.0.0.1:{port}", "vidjobs", "vidjobs-secret", kind="s3-container")
    container = DockerContainer(
        image,
        command=f"server /data --address 127.0.0.1:{port}",
        env={"MINIO_ROOT_USER": server.access_key, "MINIO_ROOT_PASSWORD": server.secret_key},
        network_mode="host",
    )

    def answers() -> bool:
        try:
            server.client().list_buckets()
        except Exception:
            return False
        return True

    with container:
        wait_for(answers, 90, f"S3 from {image} answers on port {port}", every=0.5)
        yield server


def s3_settings_for(server: S3Server, bucket: str | None = None) -> BlobSettings:
    """S3 blob settings on ``server`` for ``bucket`` (a fresh random name if omitted)."""
    return BlobSettings(
        backend="s3",
        s3_endpoint=server.endpoint,
        s3_access_key=server.access_key,
        s3_secret_key=server.secret_key,
        s3_bucket=bucket or f"vidjobs-t-{uuid.uuid4().hex[:16]}",
        s3_secure=server.secure,
        s3_region="us-east-1",
    )


def drop_bucket(server: S3Server, bucket: str) -> None:
    """Remove ``bucket`` and everything in it; a missing bucket is fine."""
    client = server.client()
    if not client.bucket_exists(bucket):
        return
    names = [
        DeleteObject(o.object_name)
        for o in client.list_objects(bucket, recursive=True)
        if o.object_name is not None
    ]
    if names:
        errors = list(client.remove_objects(bucket, names))
        assert not errors, errors
    client.remove_bucket(bucket)


@contextlib.contextmanager
def private_s3(data_dir: Path, bucket: str) -> Iterator[tuple[EmbeddedS3, BlobSettings]]:
    """A running SeaweedFS of one test alone, which it may stop and start on the same port and
    data, with settings for ``bucket`` on it (not created yet)."""
    server = EmbeddedS3(data_dir)
    server.start()
    try:
        own = S3Server(server.endpoint, server.access_key, server.secret_key, kind="seaweedfs")
        yield server, s3_settings_for(own, bucket)
    finally:
        server.stop()
