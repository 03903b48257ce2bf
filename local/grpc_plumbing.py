"""What the local gRPC servers (Batch, Pub/Sub) share: an error that carries its status code,
and unary handlers that turn it (or a bug) into the status a real client sees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


class RpcError(Exception):
    """Raised by a service method: aborts the call with `code` and the message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def unary(fn: Callable[[Any], Any], req_type: Any, serialize: Callable[[Any], bytes],
          server: str) -> grpc.RpcMethodHandler:
    """A unary-unary handler: RpcError -> its status; any other exception -> INTERNAL with the
    reason (a bug in the local server must reach the client, not hang it)."""

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return fn(request)
        except RpcError as e:
            context.abort(e.code, str(e))
        except Exception as e:
            context.abort(grpc.StatusCode.INTERNAL, f"{server}: {e!r}")

    return grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=req_type.deserialize, response_serializer=serialize)
