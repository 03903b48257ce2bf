"""IAM on the local gRPC servers: a server interceptor that reads the caller from the call's
`authorization` metadata (`local.identity`), asks which permissions the RPC needs, and checks
them against the stacks' IAM (`local.pubsub_iam`) before the servicer method runs.

    grpc.server(pool, interceptors=pubsub_interceptors(stacks))   # local.pubsub_server
    grpc.server(pool, interceptors=batch_interceptors(stacks))    # local.batch_server

Nothing is enforced without stacks or with LOCAL_IAM=off (`local.iam_launcher.iam_wanted`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from local.iam_launcher import iam_wanted
from local.identity import DEFAULT_COMPUTE_EMAIL, email_from_metadata
from local.pubsub_iam import ACT_AS, DENIED, UNAUTHENTICATED, StackIam

Needs = list[tuple[str, str]]  # (permission, resource name)
_PUB, _SUB = "/google.pubsub.v1.Publisher/", "/google.pubsub.v1.Subscriber/"


def _project(name: str) -> str:
    return "/".join(name.split("/")[:2])


def pubsub_needs(method: str, request: Any) -> Needs:
    """What a Pub/Sub RPC needs (https://cloud.google.com/pubsub/docs/access-control)."""
    if method.startswith(_PUB):
        verb, topic = method[len(_PUB):], str(getattr(request, "topic", "") or "")
        if verb == "CreateTopic":
            return [("pubsub.topics.create", _project(str(request.name)))]
        if verb == "ListTopics":
            return [("pubsub.topics.list", str(request.project))]
        perm = {"Publish": "pubsub.topics.publish", "GetTopic": "pubsub.topics.get",
                "ListTopicSubscriptions": "pubsub.topics.get",
                "DeleteTopic": "pubsub.topics.delete",
                "UpdateTopic": "pubsub.topics.update"}.get(verb)
        return [(perm, topic)] if perm else [("pubsub.unsupported", verb)]
    verb = method[len(_SUB):]
    if verb == "CreateSubscription":
        # create is checked on the new subscription's name first, so a grant Eventarc's agent
        # holds on its trigger subscription counts; the project grant counts as in Pub/Sub.
        return [("pubsub.subscriptions.create", str(request.name)),
                ("pubsub.topics.attachSubscription", str(request.topic))]
    if verb == "ListSubscriptions":
        return [("pubsub.subscriptions.list", str(request.project))]
    perm = {"Pull": "pubsub.subscriptions.consume", "StreamingPull": "pubsub.subscriptions.consume",
            "Acknowledge": "pubsub.subscriptions.consume",
            "ModifyAckDeadline": "pubsub.subscriptions.consume",
            "GetSubscription": "pubsub.subscriptions.get",
            "DeleteSubscription": "pubsub.subscriptions.delete",
            "UpdateSubscription": "pubsub.subscriptions.update"}.get(verb)
    return [(perm, str(request.subscription))] if perm else [("pubsub.unsupported", verb)]


def batch_needs(method: str, request: Any) -> Needs:
    """CreateJob acts as the job's service account: `iam.serviceAccounts.actAs` on it (the
    Compute Engine default account when none is set;
    https://cloud.google.com/batch/docs/create-run-job-custom-service-account)."""
    if not method.endswith("/CreateJob"):
        return []
    email = str(request.job.allocation_policy.service_account.email or "")
    return [(ACT_AS, email or DEFAULT_COMPUTE_EMAIL)]


class IamInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, iam: StackIam, services: tuple[str, ...],
                 needs_of: Callable[[str, Any], Needs],
                 denial: Callable[[str, str, str], str]) -> None:
        self.iam, self.services, self.needs_of, self.denial = iam, services, needs_of, denial

    def check(self, method: str, email: str | None, request: Any,
              context: grpc.ServicerContext) -> None:
        needs = self.needs_of(method, request)
        if not needs:
            return
        if email is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED)
        policy = self.iam.current()
        for permission, resource in needs:
            if not policy.allows(email or "", permission, resource):
                print(f"local iam: DENY {email} {method}: {permission} on {resource}",
                      flush=True)  # the server's log (<root>/*.log)
                context.abort(grpc.StatusCode.PERMISSION_DENIED,
                              self.denial(email or "", permission, resource))

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        method = str(details.method)
        if handler is None or not method.startswith(self.services):
            return handler
        email = email_from_metadata(details.invocation_metadata)
        if handler.unary_unary:
            inner = handler.unary_unary

            def unary(request: Any, context: grpc.ServicerContext) -> Any:
                self.check(method, email, request, context)
                return inner(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.stream_stream:
            inner_stream = handler.stream_stream

            def stream(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
                first = next(requests)  # StreamingPull: the first request names the subscription
                self.check(method, email, first, context)
                return inner_stream(itertools.chain([first], requests), context)

            return grpc.stream_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler


def _pubsub_denial(email: str, permission: str, resource: str) -> str:
    # Pub/Sub's exact sentence, nothing more (the server log names permission and resource).
    return DENIED


def _batch_denial(email: str, permission: str, resource: str) -> str:
    return (f"{email} does not have {permission} on service account {resource}: grant "
            "roles/iam.serviceAccountUser on that account to the caller")


def pubsub_interceptors(stacks: Sequence[Path]) -> list[grpc.ServerInterceptor]:
    if not iam_wanted(stacks):
        return []
    return [IamInterceptor(StackIam(stacks), (_PUB, _SUB), pubsub_needs, _pubsub_denial)]


def batch_interceptors(stacks: Sequence[Path]) -> list[grpc.ServerInterceptor]:
    if not iam_wanted(stacks):
        return []
    return [IamInterceptor(StackIam(stacks), ("/google.cloud.batch.v1.BatchService/",),
                           batch_needs, _batch_denial)]
