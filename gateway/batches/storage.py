"""Where file bytes live: a local directory (one node) or S3-compatible object storage."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import IO, Any, Protocol

from gateway.batches.settings import BatchSettings


class FileStorage(Protocol):
    async def write(self, name: str, source: IO[bytes]) -> None:
        """Store ``source`` (read from its start) under ``name``, replacing any."""
        ...

    async def write_bytes(self, name: str, data: bytes) -> None: ...

    async def read(self, name: str) -> bytes: ...

    async def delete(self, name: str) -> None: ...


class LocalStorage:
    """One file per name in ``root``; written to a temporary name, then renamed into place."""

    def __init__(self, root: str) -> None:
        self._root = Path(root)

    def _path(self, name: str) -> Path:
        return self._root / name

    async def write(self, name: str, source: IO[bytes]) -> None:
        await asyncio.to_thread(self._write, name, source)

    def _write(self, name: str, source: IO[bytes]) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        partial = self._path(name + ".part")
        source.seek(0)
        with partial.open("wb") as target:
            shutil.copyfileobj(source, target, 1024 * 1024)
        os.replace(partial, self._path(name))

    async def write_bytes(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(self._write_bytes, name, data)

    def _write_bytes(self, name: str, data: bytes) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        partial = self._path(name + ".part")
        partial.write_bytes(data)
        os.replace(partial, self._path(name))

    async def read(self, name: str) -> bytes:
        return await asyncio.to_thread(self._path(name).read_bytes)

    async def delete(self, name: str) -> None:
        await asyncio.to_thread(self._path(name).unlink, True)


class S3Storage:
    """Objects ``<prefix><name>`` in one bucket, through boto3 (the ``s3`` extra) in threads;
    credentials and region come from boto3's usual sources (``AWS_*`` variables...)."""

    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None) -> None:
        import boto3  # the optional extra, only when configured

        self._client: Any = boto3.client("s3", endpoint_url=endpoint_url)
        self._bucket = bucket
        self._prefix = prefix

    async def write(self, name: str, source: IO[bytes]) -> None:
        source.seek(0)
        await asyncio.to_thread(
            self._client.upload_fileobj, source, self._bucket, self._prefix + name
        )

    async def write_bytes(self, name: str, data: bytes) -> None:
        await asyncio.to_thread(
            self._client.put_object, Bucket=self._bucket, Key=self._prefix + name, Body=data
        )

    async def read(self, name: str) -> bytes:
        def get() -> bytes:
            reply = self._client.get_object(Bucket=self._bucket, Key=self._prefix + name)
            data: bytes = reply["Body"].read()
            return data

        return await asyncio.to_thread(get)

    async def delete(self, name: str) -> None:
        await asyncio.to_thread(
            self._client.delete_object, Bucket=self._bucket, Key=self._prefix + name
        )


def storage_for(settings: BatchSettings) -> FileStorage:
    if settings.s3_bucket:
        return S3Storage(settings.s3_bucket, settings.s3_prefix, settings.s3_endpoint_url)
    return LocalStorage(settings.files_dir)
