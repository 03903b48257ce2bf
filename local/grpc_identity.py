"""Clients of the local gRPC servers (Pub/Sub, Batch) that act as a principal: the bearer
token of `local.identity` travels as the `authorization` metadata of every call, which the
servers read with `local.identity.email_from_metadata`."""

from __future__ import annotations

from typing import Any, NamedTuple

import grpc

from local.identity import token_for


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _CallDetails(_Details, grpc.ClientCallDetails):  # type: ignore[misc]
    """The call's details with the token added (grpc wants a ClientCallDetails)."""


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, email: str) -> None:
        self.header = ("authorization", f"Bearer {token_for(email)}")

    def _with_token(self, d: Any) -> Any:
        return _CallDetails(d.method, d.timeout, [*(d.metadata or ()), self.header],
                            d.credentials, getattr(d, "wait_for_ready", None),
                            getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation: Any, d: Any, request: Any) -> Any:
        return continuation(self._with_token(d), request)

    def intercept_unary_stream(self, continuation: Any, d: Any, request: Any) -> Any:
        return continuation(self._with_token(d), request)

    def intercept_stream_unary(self, continuation: Any, d: Any, requests: Any) -> Any:
        return continuation(self._with_token(d), requests)

    def intercept_stream_stream(self, continuation: Any, d: Any, requests: Any) -> Any:
        return continuation(self._with_token(d), requests)


def channel_for(target: str, email: str | None) -> grpc.Channel:
    """An insecure channel to a local gRPC server whose calls act as `email` (None: none)."""
    channel = grpc.insecure_channel(target)
    return channel if email is None else grpc.intercept_channel(channel, _Bearer(email))


def publisher_for(target: str, email: str) -> Any:
    """A real `pubsub_v1.PublisherClient` on the local Pub/Sub server, acting as `email`."""
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    transport = PublisherGrpcTransport(channel=channel_for(target, email), host=target)
    return pubsub_v1.PublisherClient(transport=transport)


def subscriber_for(target: str, email: str) -> Any:
    """A real `pubsub_v1.SubscriberClient` on the local Pub/Sub server, acting as `email`."""
    from google.cloud import pubsub_v1  # type: ignore[attr-defined]
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    transport = SubscriberGrpcTransport(channel=channel_for(target, email), host=target)
    return pubsub_v1.SubscriberClient(transport=transport)
