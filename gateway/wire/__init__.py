"""The gateway's own HTTP/1.1 client, behind httpx's transport interface."""

from gateway.wire.response_head import HeaderLimitExceeded
from gateway.wire.transport import NativeTransport

__all__ = ["HeaderLimitExceeded", "NativeTransport"]
