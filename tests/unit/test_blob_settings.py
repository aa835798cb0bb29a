"""BlobSettings from the environment: every variable read, bad values refused with its name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vidjobs.blobs import BlobSettings, open_blob_store
from vidjobs.blobs.local import LocalBlobStore
from vidjobs.blobs.s3 import S3BlobStore
from vidjobs.settings import SettingsError

FromEnv = Callable[..., Any]


def test_defaults_are_a_local_directory(from_env: FromEnv) -> None:
    settings = from_env(BlobSettings, {})
    assert settings == BlobSettings()
    assert settings.backend == "local"
    assert isinstance(open_blob_store(settings), LocalBlobStore)


def test_every_variable_is_read(from_env: FromEnv) -> None:
    settings = from_env(
        BlobSettings,
        {
            "VIDJOBS_BLOB_BACKEND": "S3",
            "VIDJOBS_BLOB_DIR": "/srv/blobs",
            "VIDJOBS_S3_ENDPOINT": "minio:9000",
            "VIDJOBS_S3_ACCESS_KEY": "ak",
            "VIDJOBS_S3_SECRET_KEY": "sk",
            "VIDJOBS_S3_BUCKET": "videos",
            "VIDJOBS_S3_SECURE": "true",
            "VIDJOBS_S3_REGION": "eu-west-1",
            "VIDJOBS_S3_CONNECT_TIMEOUT": "1.5",
            "VIDJOBS_S3_READ_TIMEOUT": "10",
            "VIDJOBS_S3_PARALLEL_UPLOADS": "2",
        },
    )
    assert settings == BlobSettings(
        backend="s3",
        directory=Path("/srv/blobs"),
        s3_endpoint="minio:9000",
        s3_access_key="ak",
        s3_secret_key="sk",
        s3_bucket="videos",
        s3_secure=True,
        s3_region="eu-west-1",
        s3_connect_timeout_s=1.5,
        s3_read_timeout_s=10.0,
        s3_parallel_uploads=2,
    )
    assert "sk" not in repr(settings)
    store = open_blob_store(settings)
    assert isinstance(store, S3BlobStore)
    store.close()


def test_scheme_in_the_endpoint_sets_secure() -> None:
    store = S3BlobStore(
        endpoint="https://s3.example.com/", access_key="a", secret_key="b", bucket="videos"
    )
    assert store.endpoint == "s3.example.com"
    assert store._client._base_url.is_https  # the SDK has no getter
    store.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("VIDJOBS_BLOB_BACKEND", "gcs"),
        ("VIDJOBS_S3_SECURE", "maybe"),
        ("VIDJOBS_S3_CONNECT_TIMEOUT", "soon"),
        ("VIDJOBS_S3_READ_TIMEOUT", "0"),
        ("VIDJOBS_S3_PARALLEL_UPLOADS", "many"),
    ],
)
def test_bad_values_name_the_variable(from_env: FromEnv, name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        from_env(BlobSettings, {name: value})
