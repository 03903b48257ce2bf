"""The one way to build a real Batch API client against the local backend."""

from __future__ import annotations

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.batch_v1 import BatchServiceClient
from google.cloud.batch_v1.services.batch_service.transports import BatchServiceGrpcTransport

from local.grpc_identity import channel_for


def batch_client(target: str, principal: str | None = None) -> BatchServiceClient:
    """A real `BatchServiceClient` speaking gRPC to `target` ("127.0.0.1:PORT"), acting as
    `principal` (an email: the local Batch server checks its actAs at CreateJob).

    The channel is insecure (loopback only) and the credentials anonymous, so nothing reads
    Application Default Credentials: production and local differ only here.
    """
    channel = channel_for(target, principal)
    transport = BatchServiceGrpcTransport(
        channel=channel, credentials=AnonymousCredentials(), host=target
    )
    # client_options only pins the endpoint for anything that reads it (e.g. repr, logging);
    # the transport instance already decides where calls go.
    return BatchServiceClient(
        transport=transport, client_options=ClientOptions(api_endpoint=target)
    )
