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
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
from aiohttp import web
from yarl import URL

from local.gcs_events import DELETE, FINALIZE, notification_message
from local.gcs_names import listed_body, stored_name
from local.gcs_requests import PROJECT_BUCKET, Invalid, Need, Plan, Unmapped, plan, query_string
from local.grpc_identity import publisher_for
from local.iam_policy import Policy, Request, load_policy
from local.identity import ADMIN_EMAIL, GCS_AGENT_EMAIL, email_from_authorization
from local.pubsub_stack import declared_notifications
from tfjson import expand_groups

log = logging.getLogger("local.iam_proxy")
READY_PATH = "/_gpub/iam/ready"
RELOAD_PATH = "/_gpub/iam/reload"  # POST: re-read the stacks now (answers the new generation)
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
    """The union of the stacks' policies (each with its client shards), re-read when a file's
    mtime changes or a shard comes or goes (checked at most every `check_every_s`), or at once
    by `reload()` (the `RELOAD_PATH` hook tests use)."""

    def __init__(self, stack_files: Sequence[Path], check_every_s: float = 0.5) -> None:
        self.files = [Path(p) for p in stack_files]
        self.check_every_s = check_every_s
        self._stamp: tuple[float, ...] = ()
        self._checked = 0.0
        self._policy = Policy()
        self.generation = 0  # how many times the policy was (re)loaded

    def current(self) -> Policy:
        now = time.monotonic()
        if now - self._checked >= self.check_every_s:
            self._checked = now
            stamp = self._stamp_now()
            if stamp != self._stamp:
                self._load(stamp)
        return self._policy

    def _stamp_now(self) -> tuple[float, ...]:
        files = expand_groups(self.files)
        return tuple(p.stat().st_mtime if p.is_file() else -1.0 for p in files)

    def reload(self) -> int:
        """Re-read every stack file now; the new generation."""
        self._checked = time.monotonic()
        self._load(self._stamp_now())
        return self.generation

    def _load(self, stamp: tuple[float, ...]) -> None:
        self._policy = load_policy(p for p in self.files if p.is_file())
        self._stamp = stamp
        self.generation += 1
        for address in self._policy.unresolved:
            log.warning("IAM binding %s: bucket/project not resolvable, ignored", address)


@dataclass(frozen=True)
class Session:
    """A resumable upload the layer authorized when it was opened."""

    bucket: str
    name: str


class IamProxy:
    def __init__(self, upstream: str, policies: PolicySource, *, iam: bool = True,
                 events: Events | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.policies = policies
        self.iam = iam  # False (LOCAL_IAM=off): identities still required, nothing denied
        self.events = events
        self.sessions: dict[str, Session] = {}
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
        if request.path == RELOAD_PATH and request.method == "POST":
            return web.json_response({"generation": self.policies.reload()})
        body = await request.read()
        email = email_from_authorization(request.headers.get("Authorization"))
        if email is None and self.iam:
            return web.json_response(
                error_body(401, "Login Required", "required", locationType="header",
                           location="Authorization"), status=401)
        raw_path = request.raw_path.split("?", 1)[0]
        p = plan(request.method, raw_path, list(request.query.items()), body,
                 request.headers.get("Content-Type", ""))
        if "X-HTTP-Method-Override" in request.headers:
            p.needs = Unmapped("X-HTTP-Method-Override is not supported by the local IAM layer")
        if isinstance(p.needs, Invalid):
            log.warning("INVALID %s %s: %s", request.method, raw_path, p.needs.message)
            return web.json_response(error_body(400, p.needs.message, "invalid"), status=400)
        if isinstance(p.needs, Unmapped):  # fail closed, with IAM on or off, for everyone:
            # only a request the layer parsed can be rebuilt for the storage server
            msg = f"the local IAM layer cannot handle this request ({p.needs.reason})"
            log.warning("DENY %s %s %s: %s", email, request.method, raw_path, msg)
            return web.json_response(error_body(403, msg, "forbidden"), status=403)
        chunk_of = self.sessions.get(p.upload_id) if p.upload_id else None
        if p.upload_id and chunk_of is None:
            msg = f"upload session {p.upload_id!r} was not opened through the local IAM layer"
            return web.json_response(error_body(404, msg, "notFound"), status=404)
        if chunk_of is not None:
            p.path = f"/upload/storage/v1/b/{quote(chunk_of.bucket, safe='')}/o"
        needs = p.needs
        if self.iam and email is not None and email != ADMIN_EMAIL:
            denied = await self._authorize(email, needs)
            if denied is not None:
                return denied
        resp = await self._forward(request, p, body)
        if 200 <= resp.status < 300:
            self._remember_session(needs, p.upload_id, resp)
            if self.events is not None:
                await self._emit(needs if chunk_of is None else self._finished(chunk_of, resp))
        return resp

    def _remember_session(self, needs: list[Need], upload_id: str, resp: web.Response) -> None:
        location = resp.headers.get("Location", "")
        creates = [n for n in needs if n.permission == "storage.objects.create"]
        if "upload_id=" in location and len(creates) == 1 and not upload_id:
            upload_id = parse_qs(urlsplit(location).query).get("upload_id", [""])[0]
            if upload_id:
                self.sessions[upload_id] = Session(creates[0].bucket, creates[0].object or "")

    @staticmethod
    def _finished(session: Session, resp: web.Response) -> list[Need]:
        """A chunk that completed its upload: the object is created now (finalize)."""
        body = resp.body if isinstance(resp.body, bytes) else b""
        if resp.status != 200 or b'"storage#object"' not in body:
            return []
        return [Need("storage.objects.create", session.bucket, session.name)]

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

    def _object_url(self, bucket: str, name: str) -> URL:
        return URL(f"{self.upstream}/storage/v1/b/{quote(bucket, safe='')}/o/"
                   f"{quote(stored_name(name), safe='')}", encoded=True)

    async def _metadata(self, bucket: str, name: str) -> dict[str, Any] | None:
        async with (await self.session()).get(self._object_url(bucket, name)) as resp:
            data = await resp.read()
            if resp.status != 200:
                return None
            return json.loads(listed_body(data, "application/json"))  # type: ignore[no-any-return]

    async def _authorize(self, email: str, needs: list[Need]) -> web.Response | None:
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
        url = self._object_url(bucket, name).with_query({"fields": "name"})
        async with (await self.session()).get(url) as resp:
            await resp.read()
            return resp.status == 200

    async def _forward(self, request: web.Request, p: Plan, body: bytes) -> web.Response:
        """Send the storage server the request `p` describes (the names just authorized),
        never the client's raw path; `encoded=True`: no normalization on the way."""
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        if p.content_type is not None:  # the body was rebuilt (local.gcs_uploads)
            headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
            headers["Content-Type"] = p.content_type
        query = query_string(p.query)
        url = URL(self.upstream + p.path + (f"?{query}" if query else ""), encoded=True)
        async with (await self.session()).request(
            request.method, url, headers=headers,
            data=(p.body if p.body is not None else body) or None, allow_redirects=False,
            skip_auto_headers=("Content-Type", "Accept-Encoding"),
        ) as resp:
            data = await resp.read()
            if not p.data_answer:  # metadata: stored names back to GCS names
                data = listed_body(data, resp.headers.get("Content-Type", ""))
            out = {k: v for k, v in resp.headers.items() if k.lower() not in _HOP}
            return web.Response(status=resp.status, headers=out, body=data)


def _req(email: str, need: Need) -> Request:
    return Request(email, need.permission, need.bucket, need.object, need.list_prefix)


class Events:
    """GCS notification configurations from the stacks (and their client shards), published
    to the local Pub/Sub."""

    def __init__(self, stack_files: Sequence[Path], pubsub_target: str) -> None:
        docs = [json.loads(p.read_text(encoding="utf-8")) for p in expand_groups(stack_files)
                if p.is_file()]
        self.notifications = declared_notifications(docs)
        # Cloud Storage publishes as its service agent, which the stack makes a publisher.
        self.publisher = publisher_for(pubsub_target, GCS_AGENT_EMAIL)

    def wanted(self, bucket: str, event: str, name: str) -> bool:
        return any(n.bucket == bucket and n.wants(event, name) for n in self.notifications)

    def publish(self, event: str, obj: dict[str, Any]) -> None:
        for i, n in enumerate(self.notifications, start=1):
            if n.bucket == obj["bucket"] and n.wants(event, str(obj["name"])):
                data, attributes = notification_message(n, i, event, obj)
                future = self.publisher.publish(n.topic, data, **attributes)  # batched, async
                future.add_done_callback(lambda f, t=n.topic: _log_publish_error(f, t))


def _log_publish_error(future: Any, topic: str) -> None:
    if (error := future.exception()) is not None:  # e.g. the agent is no publisher on topic
        log.warning("notification to %s not published: %s", topic, error)


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
