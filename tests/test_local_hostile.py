"""The local IAM layer tried as a hostile client would (issue: the local cloud as a security
boundary): one test per attack, then hypothesis over path segments, encodings and methods.

The storage server is the real fake-gcs-server with its filesystem backend (as `bin/demo`
runs it), under a deep root, so a name that escaped the root would show up as a file; requests
are sent with `http.client`, which sends the path byte for byte (requests/urllib3 would remove
dot segments before the layer ever saw them)."""

from __future__ import annotations

import http.client
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from local.gcs import start_gcs
from local.gcs_names import listed_name
from local.iam_launcher import reload_iam, start_iam_proxy
from local.iam_policy import Policy, Request, load_policy
from local.identity import ADMIN_EMAIL, token_for
from local.procs import free_port, terminate
from stacks.layout import CLIENT_SA_PREFIX, INPUTS, OUTPUTS, RUN_SA_PREFIX, sa_email

FIXTURE = Path(__file__).parent / "fixtures" / "local_iam" / "tenancy_v2" / "cdk.tf.json"
PROJECT = "demo-proj"
ACME, GLOBEX = f"{PROJECT}-acme", f"{PROJECT}-globex"
CLIENT_ACME = sa_email(CLIENT_SA_PREFIX + "acme", PROJECT)
RUN_ACME = sa_email(RUN_SA_PREFIX + "acme", PROJECT)
G_INPUT, G_OUTPUT = f"{INPUTS}j/b1/secret.txt", f"{OUTPUTS}j/b1/r.txt"
SEED = {  # (bucket, name) -> content: each object's content names it
    (ACME, f"{INPUTS}j/b1/a.txt"): b"acme input",
    (ACME, f"{OUTPUTS}j/b1/a.txt"): b"acme output",
    (GLOBEX, G_INPUT): b"globex input",
    (GLOBEX, G_OUTPUT): b"globex output",
}


@dataclass
class Cloud:
    port: int  # the IAM layer
    upstream_port: int  # fake-gcs-server itself (the test's own view of what is stored)
    tmp: Path
    root: Path
    stack: Path

    def call(self, method: str, path: str, email: str | None = None, body: bytes = b"",
             ctype: str = "application/json", port: int | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=20)
        headers = {"Content-Type": ctype} if body else {}
        if email:
            headers["Authorization"] = f"Bearer {token_for(email)}"
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, data

    def stored(self) -> dict[tuple[str, str], bytes]:
        """Every object fake-gcs-server holds, by GCS name, read behind the layer's back."""
        out = {}
        for bucket in (ACME, GLOBEX):
            status, data = self.call("GET", f"/storage/v1/b/{bucket}/o",
                                     port=self.upstream_port)
            assert status == 200, data
            for item in json.loads(data).get("items", []):
                _, content = self.call("GET", f"/storage/v1/b/{bucket}/o/"
                                       f"{quote(item['name'], safe='')}?alt=media",
                                       port=self.upstream_port)
                out[(bucket, listed_name(item["name"]))] = content
        return out

    def host_files(self) -> set[Path]:
        """Files anywhere under the test's folder except the storage server's own folder."""
        gcs = self.root / "gcs"
        return {p for p in self.tmp.rglob("*") if p.is_file() and gcs not in p.parents
                and p.suffix != ".log"}

    def reset(self) -> None:
        for (bucket, name), content in SEED.items():
            status, _ = self.call("POST", f"/upload/storage/v1/b/{bucket}/o?uploadType=media&"
                                  f"name={quote(name, safe='')}", ADMIN_EMAIL, content,
                                  "text/plain")
            assert status == 200


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    tmp = tmp_path_factory.mktemp("hostile")
    root = tmp / "a" / "b" / "c" / "d" / "e" / "f" / "g" / "local"
    root.mkdir(parents=True)
    stack = tmp / "cdk.tf.json"
    shutil.copy(FIXTURE, stack)
    port, gport = free_port(), free_port()
    gcs = start_gcs(root, gport, external_url=f"http://127.0.0.1:{port}")
    try:
        proxy = start_iam_proxy(root, port, f"http://127.0.0.1:{gport}", [stack])
        try:
            c = Cloud(port, gport, tmp, root, stack)
            for bucket in (ACME, GLOBEX):
                assert c.call("POST", f"/storage/v1/b?project={PROJECT}", ADMIN_EMAIL,
                              json.dumps({"name": bucket}).encode())[0] == 200
            c.reset()
            yield c
        finally:
            terminate(proxy.pid, 5)
    finally:
        terminate(gcs.pid, 5)


def _o(name: str) -> str:
    return quote(name, safe="")


# ---- one test per attack of the issue ------------------------------------------------------
@pytest.mark.parametrize("dots", ["..", "%2e%2e", "%2E.", ".%2e"])
def test_dot_segments_do_not_reach_another_bucket(cloud: Cloud, dots: str) -> None:
    up = "/".join([dots] * 3)
    path = f"/storage/v1/b/{ACME}/o/{OUTPUTS.rstrip('/')}/{up}/{GLOBEX}/o/{_o(G_OUTPUT)}?alt=media"
    status, data = cloud.call("GET", path, CLIENT_ACME)
    assert SEED[(GLOBEX, G_OUTPUT)] not in data
    assert status == 400 and json.loads(data)["error"]["errors"][0]["reason"] == "invalid"
    # and the direct request is the 403 it always was
    assert cloud.call("GET", f"/storage/v1/b/{GLOBEX}/o/{_o(G_OUTPUT)}?alt=media",
                      CLIENT_ACME)[0] == 403


def test_run_identity_cannot_read_or_delete_through_dot_segments(cloud: Cloud) -> None:
    sneak = f"/storage/v1/b/{ACME}/o/outputs/../../../{GLOBEX}/o/"
    status, data = cloud.call("GET", sneak + _o(G_INPUT) + "?alt=media", RUN_ACME)
    assert status == 400 and SEED[(GLOBEX, G_INPUT)] not in data
    assert cloud.call("DELETE", sneak + _o(G_OUTPUT), RUN_ACME)[0] == 400
    assert (GLOBEX, G_OUTPUT) in cloud.stored()


@pytest.mark.parametrize("verb", ["copyTo", "rewriteTo"])
def test_copy_and_rewrite_cannot_write_into_another_bucket(cloud: Cloud, verb: str) -> None:
    src = f"/storage/v1/b/{ACME}/o/{_o(OUTPUTS + 'j/b1/a.txt')}/{verb}"
    before = cloud.stored()
    for dst in (f"/b/{ACME}/o/outputs/../../../{GLOBEX}/o/{_o(G_OUTPUT)}",  # overwrite
                f"/b/{ACME}/o/outputs/../../../{GLOBEX}/o/{_o(INPUTS + 'planted')}",  # plant
                f"/b/{GLOBEX}/o/{_o(INPUTS + 'planted')}"):  # plainly
        status, _ = cloud.call("POST", src + dst, RUN_ACME, b"{}")
        assert status in {400, 403}, dst
    assert cloud.stored() == before


def test_copy_needs_read_on_the_source(cloud: Cloud) -> None:
    # client-acme may create under inputs/ but not read there: copying an input it cannot
    # read into a name it can create is a read of the source.
    path = (f"/storage/v1/b/{ACME}/o/{_o(INPUTS + 'j/b1/a.txt')}/copyTo/b/{ACME}/o/"
            f"{_o(INPUTS + 'j/b1/copy.txt')}")
    status, data = cloud.call("POST", path, CLIENT_ACME, b"{}")
    assert status == 403 and b"storage.objects.get" in data


def test_compose_needs_read_on_every_source(cloud: Cloud) -> None:
    body = json.dumps({"sourceObjects": [{"name": INPUTS + "j/b1/a.txt"}],
                       "destination": {"contentType": "text/plain"}}).encode()
    status, data = cloud.call(
        "POST", f"/storage/v1/b/{ACME}/o/{_o(INPUTS + 'j/b1/composed.txt')}/compose",
        CLIENT_ACME, body)
    assert status == 403 and b"storage.objects.get" in data
    assert (ACME, INPUTS + "j/b1/composed.txt") not in cloud.stored()


def test_an_object_name_never_reaches_a_host_path(cloud: Cloud) -> None:
    before = cloud.host_files()
    name = INPUTS + "../" * 12 + "escaped.txt"
    status, data = cloud.call("POST", f"/upload/storage/v1/b/{ACME}/o?uploadType=media&"
                              f"name={_o(name)}", CLIENT_ACME, b"escape", "text/plain")
    assert status == 200, data
    assert json.loads(data)["name"] == name  # on GCS such a name is a literal object name
    assert cloud.host_files() == before
    assert cloud.stored()[(ACME, name)] == b"escape"
    status, data = cloud.call("GET", f"/storage/v1/b/{ACME}/o?prefix={_o(INPUTS + '..')}",
                              ADMIN_EMAIL)
    assert [i["name"] for i in json.loads(data)["items"]] == [name]


def test_an_upload_cannot_overwrite_the_enforced_stack(cloud: Cloud) -> None:
    """The issue's chain: escape the root, rewrite the stack file the layer enforces so that
    client-acme is objectAdmin on globex's bucket, then read globex's data."""
    doc = json.loads(cloud.stack.read_text())
    doc["resource"]["google_storage_bucket_iam_member"]["pwned"] = {
        "bucket": GLOBEX, "role": "roles/storage.objectAdmin",
        "member": f"serviceAccount:{CLIENT_ACME}"}
    depth = len((cloud.root / "gcs" / ACME).relative_to(cloud.tmp).parts)
    name = INPUTS + "../" * (depth + 1) + cloud.stack.name
    pristine = cloud.stack.read_bytes()
    cloud.call("POST", f"/upload/storage/v1/b/{ACME}/o?uploadType=media&name={_o(name)}",
               CLIENT_ACME, json.dumps(doc).encode(), "application/json")
    reload_iam(f"http://127.0.0.1:{cloud.port}")
    assert cloud.stack.read_bytes() == pristine
    assert cloud.call("GET", f"/storage/v1/b/{GLOBEX}/o/{_o(G_INPUT)}?alt=media",
                      CLIENT_ACME)[0] == 403


@pytest.mark.parametrize(("name", "why"), [
    (".", "'.' or '..'"), ("..", "'.' or '..'"), ("inputs/a\nb", "line feed"),
    ("inputs/a\rb", "carriage return"), (".well-known/acme-challenge/x", "acme-challenge"),
    ("inputs/" + "x" * 1018, "1025 bytes"),
])
def test_gcs_naming_rules_are_enforced_with_gcs_error_bodies(
        cloud: Cloud, name: str, why: str) -> None:
    status, data = cloud.call("POST", f"/upload/storage/v1/b/{ACME}/o?uploadType=media&"
                              f"name={_o(name)}", ADMIN_EMAIL, b"x", "text/plain")
    err = json.loads(data)["error"]
    assert status == 400 and err["code"] == 400 and err["errors"][0]["reason"] == "invalid"
    assert why in err["message"]


def test_a_resumable_chunk_needs_a_session_the_layer_opened(cloud: Cloud) -> None:
    path = (f"/upload/storage/v1/b/{GLOBEX}/o?uploadType=media&name={_o(INPUTS + 'sneaky')}"
            "&upload_id=made-up")
    for method in ("POST", "PUT"):
        assert cloud.call(method, path, CLIENT_ACME, b"x", "text/plain")[0] in {403, 404}
    assert (GLOBEX, INPUTS + "sneaky") not in cloud.stored()


# ---- fuzzing: the decision equals our IAM evaluation of what the server touched -------------
SEGMENTS = st.sampled_from([
    "..", ".", "%2e%2e", "%2E", "", "o", "b", ACME, GLOBEX, "inputs", "outputs", "j", "b1",
    "secret.txt", "r.txt", "a.txt", "copyTo", "rewriteTo", "compose", "%2F", "%252e%252e",
    _o(G_INPUT), _o(G_OUTPUT), _o(INPUTS + "j/b1/a.txt"), _o(OUTPUTS + "fz/x"),
])
APIS = st.sampled_from(["/storage/v1/b/", "/download/storage/v1/b/", "/upload/storage/v1/b/",
                        "/"])
# A start the caller may use (with how many segments a climb must undo to leave it), a climb
# of dot segments, and somewhere the caller may not go.
OWN = st.sampled_from([(f"{ACME}/o/outputs", 3), (f"{ACME}/o/inputs", 3), (f"{ACME}/o", 2),
                       (f"{ACME}/o/{_o(OUTPUTS + 'j/b1/a.txt')}/copyTo/b/{ACME}/o/outputs", 3),
                       (f"{ACME}/o/{_o(OUTPUTS + 'j/b1/a.txt')}/rewriteTo/b/{ACME}/o/outputs", 3)])
DOTS = st.sampled_from(["..", "%2e%2e", "%2E.", ".%2E"])
TARGETS = st.sampled_from([f"{GLOBEX}/o/{_o(G_OUTPUT)}", f"{GLOBEX}/o/{_o(G_INPUT)}",
                           f"{GLOBEX}/o/{_o(INPUTS + 'planted')}", f"{GLOBEX}/o",
                           f"{ACME}/o/{_o(INPUTS + 'j/b1/a.txt')}"])


@st.composite
def climbs(draw: st.DrawFn) -> str:
    api = draw(st.sampled_from(["/storage/v1/b/", "/download/storage/v1/b/"]))
    own, depth = draw(OWN)
    depth += draw(st.sampled_from([0, 0, 0, -1, 1]))
    dots = [draw(DOTS) for _ in range(max(depth, 1))]
    if draw(st.booleans()):
        dots.insert(draw(st.integers(0, len(dots))), draw(st.sampled_from([".", "", "%2e"])))
    return f"{api}{own}/{'/'.join(dots)}/{draw(TARGETS)}"


PATHS = st.one_of(
    st.builds(lambda a, s: a + "/".join(s), APIS, st.lists(SEGMENTS, min_size=1, max_size=7)),
    climbs(),
)
QUERIES = st.sampled_from(["", "?alt=media", "?uploadType=media&name=" + _o(INPUTS + "fz/n"),
                           "?uploadType=media&name=" + _o(OUTPUTS + "../" + G_INPUT),
                           "?prefix=" + _o(OUTPUTS), "?prefix=" + _o(INPUTS + ".."),
                           "?uploadType=media&name=inputs%2F..%2F..%2Fx"])


def _allowed(policy: Policy, email: str, permission: str, bucket: str, name: str | None,
             prefix: str | None = None) -> bool:
    return policy.allows(Request(email, permission, bucket, name, prefix))


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "GET", "DELETE", "POST", "PUT", "PATCH", "HEAD"]),
       path=PATHS, query=QUERIES, who=st.sampled_from([CLIENT_ACME, RUN_ACME]))
def test_fuzzed_requests_touch_only_what_the_stack_allows(
        cloud: Cloud, method: str, path: str, query: str, who: str) -> None:
    policy = load_policy([FIXTURE])
    before, files = cloud.stored(), cloud.host_files()
    status, data = cloud.call(method, path + query, who, b"fuzz", "text/plain")
    after = cloud.stored()
    assert cloud.host_files() == files, "a file appeared outside the storage root"
    for key in set(before) | set(after):
        bucket, name = key
        if key not in after:
            assert _allowed(policy, who, "storage.objects.delete", bucket, name), key
        elif before.get(key) != after[key]:
            assert _allowed(policy, who, "storage.objects.create", bucket, name), key
            if key in before:
                assert _allowed(policy, who, "storage.objects.delete", bucket, name), key
    if 200 <= status < 300:
        for (bucket, name), content in before.items():
            if content and content in data:  # the server handed this object's data out
                assert _allowed(policy, who, "storage.objects.get", bucket, name), name
        touched = json.loads(data) if data.startswith(b"{") else {}
        if touched.get("kind") == "storage#object":  # the object the server acted on
            perm = "storage.objects.get" if method in {"GET", "HEAD"} else "storage.objects.create"
            assert _allowed(policy, who, perm, touched["bucket"], touched["name"]), touched
        if touched.get("kind") == "storage#objects":
            for item in json.loads(data).get("items", []):
                assert item["name"] in {n for (_, n) in after}
                assert _allowed(policy, who, "storage.objects.list", item["bucket"], None,
                                _listed_prefix(query)), item
    if before != after:
        cloud.reset()


def _listed_prefix(query: str) -> str:
    from urllib.parse import parse_qs

    return parse_qs(query.lstrip("?")).get("prefix", [""])[0]


def test_resumable_uploads_and_odd_names_work_through_the_layer(cloud: Cloud) -> None:
    from google.cloud import storage  # type: ignore[attr-defined]

    from local.identity import credentials_for

    client = storage.Client(project=PROJECT, credentials=credentials_for(RUN_ACME),
                            client_options={"api_endpoint": f"http://127.0.0.1:{cloud.port}"})
    data = bytes(range(256)) * 3000  # 768,000 bytes in 256 KiB chunks: a resumable session
    for name in (OUTPUTS + "big/r.bin", OUTPUTS + "big/../%2e/./r.bin", OUTPUTS + "big//x%"):
        blob = client.bucket(ACME).blob(name, chunk_size=256 * 1024)
        blob.upload_from_string(data)
        assert client.bucket(ACME).blob(name).download_as_bytes() == data
    names = {b.name for b in client.list_blobs(ACME, prefix=OUTPUTS + "big/")}
    assert names == {OUTPUTS + "big/r.bin", OUTPUTS + "big/../%2e/./r.bin", OUTPUTS + "big//x%"}
    listing = client.list_blobs(ACME, prefix=OUTPUTS + "big/", delimiter="/")
    assert [b.name for b in listing] == [OUTPUTS + "big/r.bin"]
    assert set(listing.prefixes) == {OUTPUTS + "big/../", OUTPUTS + "big//"}
    with pytest.raises(Exception, match=r"storage\.objects\.create"):
        client.bucket(GLOBEX).blob(OUTPUTS + "big/r.bin", chunk_size=256 * 1024
                                   ).upload_from_string(data)


def test_an_upload_names_one_object_or_is_refused(cloud: Cloud) -> None:
    """The name the layer authorizes is the only name the storage server sees: a query name and
    a metadata name that differ are refused, and a multipart body is rebuilt by the layer."""
    meta = json.dumps({"name": OUTPUTS + "forged.txt"}).encode()
    body = (b"--B\r\ncontent-type: application/json\r\n\r\n" + meta +
            b"\r\n--B\r\ncontent-type: text/plain\r\n\r\nforged\r\n--B--")
    status, data = cloud.call(
        "POST", f"/upload/storage/v1/b/{ACME}/o?uploadType=multipart&name="
        f"{_o(INPUTS + 'fine.txt')}", CLIENT_ACME, body, 'multipart/related; boundary="B"')
    assert status == 400 and b"differ" in data
    status, data = cloud.call(
        "POST", f"/upload/storage/v1/b/{ACME}/o?uploadType=resumable&name="
        f"{_o(INPUTS + 'fine.txt')}", CLIENT_ACME, meta, "application/json")
    assert status == 400
    # A body whose parts we cannot read unambiguously is refused, not passed on.
    odd = body.replace(b"--B--", b"--B\r\ncontent-type: text/plain\r\n\r\nmore\r\n--B--")
    status, _ = cloud.call("POST", f"/upload/storage/v1/b/{ACME}/o?uploadType=multipart",
                           CLIENT_ACME, odd, 'multipart/related; boundary="B"')
    assert status == 400
    assert (ACME, OUTPUTS + "forged.txt") not in cloud.stored()
    # The same body, named consistently under inputs/, is created as exactly that object.
    ok = body.replace(meta, json.dumps({"name": INPUTS + "ok.txt"}).encode())
    status, data = cloud.call("POST", f"/upload/storage/v1/b/{ACME}/o?uploadType=multipart",
                              CLIENT_ACME, ok, 'multipart/related; boundary="B"')
    assert status == 200, data
    assert cloud.stored()[(ACME, INPUTS + "ok.txt")] == b"forged"


def test_object_data_is_never_rewritten(cloud: Cloud) -> None:
    """Names in answers are turned back into GCS names; object data never is."""
    data = json.dumps({"kind": "storage#object", "name": "x/%00", "prefixes": ["%25/"]}).encode()
    name = OUTPUTS + "data.json"
    assert cloud.call("POST", f"/upload/storage/v1/b/{ACME}/o?uploadType=media&name={_o(name)}",
                      RUN_ACME, data, "application/json")[0] == 200
    for path in (f"/storage/v1/b/{ACME}/o/{_o(name)}?alt=media",
                 f"/download/storage/v1/b/{ACME}/o/{_o(name)}?alt=media"):
        assert cloud.call("GET", path, RUN_ACME) == (200, data), path
