"""What a blob store holds, read around the code under test (a directory walk or an S3 listing)."""

from __future__ import annotations

from pathlib import Path

from minio import Minio

from vidjobs.blobs import BlobSettings

__all__ = ["stored_keys"]


def stored_keys(settings: BlobSettings) -> list[str]:
    """Every key in the store, sorted; a store not created yet holds none.

    Local: the files under the directory, without dot-files (the store's ``.tmp-`` uploads in
    progress). S3: a plain SDK listing with the settings' credentials.
    """
    if settings.backend == "local":
        root = Path(settings.directory)
        if not root.exists():
            return []
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )
    client = Minio(
        settings.s3_endpoint,
        access_key=settings.s3_access_key,
        secret_key=settings.s3_secret_key,
        secure=settings.s3_secure,
        region=settings.s3_region,
    )
    if not client.bucket_exists(settings.s3_bucket):
        return []
    return sorted(
        o.object_name
        for o in client.list_objects(settings.s3_bucket, recursive=True)
        if o.object_name is not None
    )
