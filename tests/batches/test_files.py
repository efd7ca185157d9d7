"""/v1/files: the upload cap (counted as the body arrives), the per-user storage quota,
paging and ownership, and S3-compatible storage (moto's server on loopback)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.batches.test_openai_batches import chat_line, client, finished, jsonl
from tests.conftest import RunningGateway, StartGateway
from tests.support import free_port

MIB = 1024 * 1024


@pytest.fixture
def small_files(
    start_gateway: StartGateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> RunningGateway:
    monkeypatch.setenv("GATEWAY_FILES_DIR", str(tmp_path / "files"))
    monkeypatch.setenv("GATEWAY_FILES_MAX_MB", "1")
    monkeypatch.setenv("GATEWAY_FILES_USER_QUOTA_MB", "2")
    return start_gateway(
        {"free": {"routes": {"text": ["ok"]}}, "pro": {"routes": {"text": ["ok"]}}}
    )


def test_an_upload_over_the_cap_is_refused_while_it_streams(small_files: RunningGateway) -> None:
    api = client(small_files)
    with pytest.raises(openai.APIStatusError) as declared:
        api.files.create(file=("big.bin", b"x" * (MIB + 100 * 1024)), purpose="user_data")
    assert declared.value.status_code == 413
    sent = 0

    def chunks() -> Iterator[bytes]:  # chunked: no content-length to judge it by
        nonlocal sent
        yield b'--b\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
        yield b'--b\r\ncontent-disposition: form-data; name="file"; filename="a"\r\n\r\n'
        for _ in range(64):
            sent += 64 * 1024
            yield b"x" * (64 * 1024)
        yield b"\r\n--b--\r\n"

    reply = httpx.post(
        small_files.base_url + "/files",
        content=chunks(),
        headers={
            "authorization": f"Bearer {small_files.key()}",
            "content-type": "multipart/form-data; boundary=b",
        },
    )
    assert reply.status_code == 413, reply.text
    assert reply.json()["error"]["code"] == "payload_too_large"
    assert api.files.list().data == []


def test_the_storage_quota_counts_every_file_of_the_user(small_files: RunningGateway) -> None:
    api = client(small_files)
    first = api.files.create(file=("a.bin", b"a" * (900 * 1024)), purpose="user_data")
    api.files.create(file=("b.bin", b"b" * (900 * 1024)), purpose="user_data")
    with pytest.raises(openai.BadRequestError) as refused:
        api.files.create(file=("c.bin", b"c" * (900 * 1024)), purpose="user_data")
    assert refused.value.code == "storage_quota_exceeded"
    client(small_files, "pro").files.create(file=("c.bin", b"c" * 1024), purpose="user_data")
    api.files.delete(first.id)
    api.files.create(file=("c.bin", b"c" * (900 * 1024)), purpose="user_data")


def test_files_are_listed_newest_first_in_pages_and_only_to_their_owner(
    small_files: RunningGateway,
) -> None:
    api = client(small_files)
    made = [api.files.create(file=(f"{n}.txt", b"n"), purpose="user_data").id for n in range(3)]
    first = api.files.list(limit=2)
    assert first.has_more is True and len(first.data) == 2
    rest = api.files.list(limit=2, after=first.data[-1].id)
    assert rest.has_more is False
    assert {f.id for f in [*first.data, *rest.data]} == set(made)
    other = client(small_files, "pro")
    assert other.files.list().data == []
    for call in (other.files.retrieve, other.files.content, other.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(made[0])
    with pytest.raises(openai.BadRequestError, match="purpose"):
        api.files.create(file=("x", b"x"), purpose="no-such-purpose")  # type: ignore[arg-type]


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "moto's server did not start"
            time.sleep(0.1)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


@pytest.mark.slow
def test_batches_with_files_in_s3(
    start_gateway: StartGateway, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="batch-files")
    monkeypatch.setenv("GATEWAY_FILES_S3_BUCKET", "batch-files")
    monkeypatch.setenv("GATEWAY_FILES_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("GATEWAY_FILES_DIR", "/nonexistent/never-used")
    gateway = start_gateway({"free": {"routes": {"text": ["ok"]}}})
    api = client(gateway)
    uploaded = api.files.create(file=("in.jsonl", jsonl([chat_line("s3")])), purpose="batch")
    stored = s3.list_objects_v2(Bucket="batch-files")["Contents"]
    assert [item["Key"] for item in stored] == [f"gateway-files/{uploaded.id}"]
    batch = api.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    done = finished(api, batch.id)
    assert done.status == "completed" and done.output_file_id
    assert '"custom_id":"s3"' in api.files.content(done.output_file_id).text
    api.files.delete(uploaded.id)
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="batch-files").get("Contents", [])]
    assert keys == [f"gateway-files/{done.output_file_id}"]
