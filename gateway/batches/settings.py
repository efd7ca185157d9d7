"""Files and batches options, from ``GATEWAY_FILES_*`` and ``GATEWAY_BATCH_*`` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class BatchSettings:
    files_dir: str = "data/files"  # the local storage's directory (created on first upload)
    max_file_bytes: int = 100 * MIB  # one upload
    user_quota_bytes: int = 10 * 1024 * MIB  # all of one user's files together
    s3_bucket: str | None = None  # set: file bytes go to S3-compatible storage instead
    s3_endpoint_url: str | None = None  # e.g. MinIO or moto; None: AWS
    s3_prefix: str = "gateway-files/"
    concurrency: int = 4  # lines in flight per replica, all batches together
    user_concurrency: int = 4  # lines in flight per replica for one user
    batch_concurrency: int | None = None  # lines in flight per replica for one batch (unset: none)
    claim_idle_ms: int = 15_000  # a line this long unacknowledged: its replica is presumed dead
    poll_s: float = 0.2  # how often an idle runner looks for work
    heartbeat_ttl_s: int = 10  # a replica silent this long is dead (its started lines fail)
    key_recheck_s: float = 30.0  # a batch paused for its owner's invalid key looks again

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> BatchSettings:
        env = os.environ if env is None else env
        d = cls()
        return cls(
            files_dir=env.get("GATEWAY_FILES_DIR") or d.files_dir,
            max_file_bytes=_int(env, "GATEWAY_FILES_MAX_MB", 100) * MIB,
            user_quota_bytes=_int(env, "GATEWAY_FILES_USER_QUOTA_MB", 10 * 1024) * MIB,
            s3_bucket=env.get("GATEWAY_FILES_S3_BUCKET") or None,
            s3_endpoint_url=env.get("GATEWAY_FILES_S3_ENDPOINT_URL") or None,
            s3_prefix=env.get("GATEWAY_FILES_S3_PREFIX", d.s3_prefix),
            concurrency=max(1, _int(env, "GATEWAY_BATCH_CONCURRENCY", d.concurrency)),
            user_concurrency=max(
                1, _int(env, "GATEWAY_BATCH_USER_CONCURRENCY", d.user_concurrency)
            ),
            batch_concurrency=(
                max(1, _int(env, "GATEWAY_BATCH_PER_BATCH_CONCURRENCY", 1))
                if env.get("GATEWAY_BATCH_PER_BATCH_CONCURRENCY")
                else None
            ),
            claim_idle_ms=max(100, _int(env, "GATEWAY_BATCH_CLAIM_IDLE_MS", d.claim_idle_ms)),
            heartbeat_ttl_s=max(2, _int(env, "GATEWAY_BATCH_HEARTBEAT_TTL_S", d.heartbeat_ttl_s)),
            key_recheck_s=max(1, _int(env, "GATEWAY_BATCH_KEY_RECHECK_S", 30)),
        )


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
