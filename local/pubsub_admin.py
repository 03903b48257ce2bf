"""A local-only introspection RPC of the local Pub/Sub: how many messages a subscription still
holds (ready, and leased to a consumer that has not acknowledged them yet). Pub/Sub itself has
no such call (its backlog is the Cloud Monitoring metric
`pubsub.googleapis.com/subscription/num_undelivered_messages`); `python -m local events --once`
asks it so it never reports "nothing pending" while events wait under another consumer's lease.

    gpub.local.PubSubAdmin/Backlog  Struct{"subscription": name} -> Struct{"ready", "leased"}
"""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import struct_pb2

SERVICE = "gpub.local.PubSubAdmin"


def admin_handler(state: Any) -> grpc.GenericRpcHandler:
    """`state`: the server's `local.pubsub_server.PubSub` (its `cond` and `subs`)."""
    def backlog(request: struct_pb2.Struct, context: grpc.ServicerContext) -> struct_pb2.Struct:
        name = str(request.fields["subscription"].string_value)
        with state.cond:
            s = state.subs.get(name)
            counts = (len(s.queue.ready), len(s.queue.leased)) if s is not None else None
        if counts is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Subscription does not exist: {name}")
            raise AssertionError("abort raises")
        out = struct_pb2.Struct()
        out.update({"ready": counts[0], "leased": counts[1]})
        return out

    return grpc.method_handlers_generic_handler(SERVICE, {
        "Backlog": grpc.unary_unary_rpc_method_handler(
            backlog, request_deserializer=struct_pb2.Struct.FromString,
            response_serializer=struct_pb2.Struct.SerializeToString)})


def backlog(target: str, subscription: str, timeout_s: float = 10.0) -> dict[str, int]:
    """{"ready": n, "leased": m} of one subscription of the local Pub/Sub at `target`."""
    with grpc.insecure_channel(target) as channel:
        call: Any = channel.unary_unary(
            f"/{SERVICE}/Backlog", request_serializer=struct_pb2.Struct.SerializeToString,
            response_deserializer=struct_pb2.Struct.FromString)
        request = struct_pb2.Struct()
        request.update({"subscription": subscription})
        got = call(request, timeout=timeout_s)
        return {k: int(got.fields[k].number_value) for k in ("ready", "leased")}
