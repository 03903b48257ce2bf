"""The IAM layer: an HTTP proxy in front of fake-gcs-server that authorizes like GCS.

    python -m local.iam_proxy --port P --upstream http://127.0.0.1:U --stack cdk.tf.json ...

Every request must carry `Authorization: Bearer gpub-local.<email>` (`local.identity`);
without one the answer is 401, as GCS answers an unauthenticated call; with one, each
permission the request needs (`local.gcs_requests`) is checked against the stacks' bucket
policies (`local.iam_policy`) and a denial is a 403 with GCS's JSON error body. Error bodies:
https://cloud.google.com/storage/docs/json_api/v1/status-codes. The stack files are re-read
when they change, so a new synth is enforced without a restart.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from local.gcs_events import DELETE, FINALIZE, notification_message
from local.gcs_requests import PROJECT_BUCKET, Need, Unmapped, classify
from local.iam_policy import Policy, Request, load_policy
from local.identity import ADMIN_EMAIL, email_from_authorization
from local.pubsub_stack import declared_notifications

log = logging.getLogger("local.iam_proxy")
READY_PATH = "/_gpub/iam/ready"
_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host",
        "content-encoding", "proxy-authorization", "te", "trailer", "upgrade"}


def error_body(code: int, message: str, reason: str, **extra: str) -> dict[str, Any]:
    """GCS JSON API error shape: {"error": {"code", "message", "errors": [{...}]}}."""
    return {"error": {"code": code, "message": message,
                      "errors": [{"message": message, "domain": "global", "reason": reason,
                                  **extra}]}}


def denial_message(email: str, need: Need) -> str:
    # The sentence GCS uses, e.g. "x@p.iam.gserviceaccount.com does not have
    # storage.objects.list access to the Google Cloud Storage bucket. Permission
    # 'storage.objects.list' denied on resource (or it may not exist)."
    what = "bucket" if need.object is None else "object"
    return (f"{email} does not have {need.permission} access to the Google Cloud Storage "
            f"{what}. Permission '{need.permission}' denied on resource (or it may not exist).")


class PolicySource:
    """The union of the stacks' policies, re-read when a file's mtime changes."""

    def __init__(self, stack_files: Sequence[Path], check_every_s: float = 0.5) -> None:
        self.files = [Path(p) for p in stack_files]
        self.check_every_s = check_every_s
        self._stamp: tuple[float, ...] = ()
        self._checked = 0.0
        self._policy = Policy()

    def current(self) -> Policy:
        now = time.monotonic()
        if now - self._checked >= self.check_every_s:
            self._checked = now
            stamp = tuple(p.stat().st_mtime if p.is_file() else -1.0 for p in self.files)
            if stamp != self._stamp:
                self._policy = load_policy(p for p in self.files if p.is_file())
                self._stamp = stamp
                for address in self._policy.unresolved:
                    log.warning("IAM binding %s: bucket/project not resolvable, ignored", address)
        return self._policy


class IamProxy:
    def __init__(self, upstream: str, policies: PolicySource, *, iam: bool = True,
                 events: Events | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.policies = policies
        self.iam = iam  # False (LOCAL_IAM=off): identities still required, nothing denied
        self.events = events
        self._session: aiohttp.ClientSession | None = None

    async def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, limit_per_host=256),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_read=300),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.path == READY_PATH:
            return web.json_response({"ready": True})
        body = await request.read()
        email = email_from_authorization(request.headers.get("Authorization"))
        if email is None and self.iam:
            return web.json_response(
                error_body(401, "Login Required", "required", locationType="header",
                           location="Authorization"), status=401)
        raw_path = request.raw_path.split("?", 1)[0]
        needs = classify(request.method, raw_path, dict(request.query), body,
                         request.headers.get("Content-Type", ""))
        if self.iam and email is not None and email != ADMIN_EMAIL:
            denied = await self._authorize(request, email, needs)
            if denied is not None:
                return denied
        resp = await self._forward(request, body)
        if self.events is not None and 200 <= resp.status < 300 and not isinstance(
                needs, Unmapped):
            await self._emit(needs)
        return resp

    async def _emit(self, needs: list[Need]) -> None:
        """What the bucket's notification configurations would publish for this request."""
        assert self.events is not None
        for need in needs:
            if need.object is None or need.permission not in EVENT_OF:
                continue
            event = EVENT_OF[need.permission]
            if not self.events.wanted(need.bucket, event, need.object):
                continue
            obj: dict[str, Any] = {"bucket": need.bucket, "name": need.object}
            if event == FINALIZE:
                obj = await self._metadata(need.bucket, need.object) or obj
            self.events.publish(event, obj)

    async def _metadata(self, bucket: str, name: str) -> dict[str, Any] | None:
        from urllib.parse import quote

        url = f"{self.upstream}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        async with (await self.session()).get(url) as resp:
            data = await resp.read()
            return json.loads(data) if resp.status == 200 else None

    async def _authorize(self, request: web.Request, email: str, needs: list[Need] | Unmapped
                         ) -> web.Response | None:
        raw_path = request.raw_path.split("?", 1)[0]
        if isinstance(needs, Unmapped):
            msg = f"{email}: the local IAM layer cannot authorize this request ({needs.reason})"
            log.warning("DENY %s %s: %s", request.method, raw_path, msg)
            return web.json_response(error_body(403, msg, "forbidden"), status=403)
        policy = self.policies.current()
        for need in needs:
            denied = await self._denied(policy, email, need)
            if denied is not None:
                msg = denial_message(email, denied)
                log.warning("DENY %s %s %s/%s (%s)", email, denied.permission, denied.bucket,
                            denied.object or "", policy.explain(_req(email, denied)))
                return web.json_response(error_body(403, msg, "forbidden"), status=403)
        return None

    async def _denied(self, policy: Policy, email: str, need: Need) -> Need | None:
        """The permission that is missing for `need`, or None when it is granted."""
        if need.bucket == PROJECT_BUCKET:
            ok = policy.allows_project(email, need.permission, need.project or "")
            return None if ok else need
        if not policy.allows(_req(email, need)):
            return need
        if need.overwrite_check and await self._exists(need.bucket, need.object or ""):
            replace = Need("storage.objects.delete", need.bucket, need.object)
            return None if policy.allows(_req(email, replace)) else replace
        return None

    async def _exists(self, bucket: str, name: str) -> bool:
        from urllib.parse import quote

        url = f"{self.upstream}/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        async with (await self.session()).get(url, params={"fields": "name"}) as resp:
            await resp.read()
            return resp.status == 200

    async def _forward(self, request: web.Request, body: bytes) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        url = self.upstream + request.raw_path
        async with (await self.session()).request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False,
            skip_auto_headers=("Content-Type", "Accept-Encoding"),
        ) as resp:
            data = await resp.read()
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
            return web.Response(status=resp.status, headers=out, body=data)


def _req(email: str, need: Need) -> Request:
    return Request(email, need.permission, need.bucket, need.object, need.list_prefix)


class Events:
    """GCS notification configurations from the stacks, published to the local Pub/Sub."""

    def __init__(self, stack_files: Sequence[Path], pubsub_target: str) -> None:
        os.environ["PUBSUB_EMULATOR_HOST"] = pubsub_target  # read by the client library
        from google.cloud import pubsub_v1  # type: ignore[attr-defined]

        docs = [json.loads(p.read_text(encoding="utf-8")) for p in stack_files if p.is_file()]
        self.notifications = declared_notifications(docs)
        self.publisher = pubsub_v1.PublisherClient()

    def wanted(self, bucket: str, event: str, name: str) -> bool:
        return any(n.bucket == bucket and n.wants(event, name) for n in self.notifications)

    def publish(self, event: str, obj: dict[str, Any]) -> None:
        for i, n in enumerate(self.notifications, start=1):
            if n.bucket == obj["bucket"] and n.wants(event, str(obj["name"])):
                data, attributes = notification_message(n, i, event, obj)
                self.publisher.publish(n.topic, data, **attributes)  # batched, asynchronous


EVENT_OF = {"storage.objects.create": FINALIZE, "storage.objects.delete": DELETE}


def make_app(upstream: str, stack_files: Sequence[Path], *, iam: bool = True,
             pubsub: str | None = None) -> web.Application:
    events = Events(stack_files, pubsub) if pubsub else None
    proxy = IamProxy(upstream, PolicySource(stack_files), iam=iam, events=events)
    app = web.Application(client_max_size=1024**3)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)

    async def on_cleanup(_: web.Application) -> None:
        await proxy.close()

    app.on_cleanup.append(on_cleanup)
    return app


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m local.iam_proxy", description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream", required=True, help="fake-gcs-server endpoint")
    p.add_argument("--stack", type=Path, action="append", default=[], help="cdk.tf.json")
    p.add_argument("--no-iam", action="store_true", help="authorize nothing (LOCAL_IAM=off)")
    p.add_argument("--pubsub", help="local Pub/Sub target: publish the stacks' GCS notifications")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = make_app(a.upstream, a.stack, iam=not a.no_iam, pubsub=a.pubsub)
    loop = None
    try:  # uvloop (installed with workflows-emulator's uvicorn) cuts the proxy's CPU per call
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=a.port, loop=loop,
                access_log=None, print=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
