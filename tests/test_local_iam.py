"""The local IAM layer: bindings read from a synthesized stack (a hand-written Tenancy v2
fixture), GCS permission mapping, CEL conditions, and the proxy in front of a real
fake-gcs-server with real google-cloud-storage clients."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage  # type: ignore[attr-defined]

from local.gcs_requests import Need, Unmapped, classify
from local.iam_launcher import reload_iam, start_iam_proxy
from local.iam_policy import Request, load_policy, role_grants
from local.identity import ADMIN_EMAIL, credentials_for, email_from_authorization, token_for
from local.procs import free_port, terminate
from tests._helpers.gcs_server import fake_gcs

FIXTURE = Path(__file__).parent / "fixtures" / "local_iam" / "tenancy_v2" / "cdk.tf.json"
RUN_ACME = "run-acme@demo-proj.iam.gserviceaccount.com"
CLIENT_ACME = "client-acme@demo-proj.iam.gserviceaccount.com"
OPERATOR = "gpub-operator@demo-proj.iam.gserviceaccount.com"
ACME, GLOBEX = "demo-proj-acme", "demo-proj-globex"


# ---- policy from the stack ---------------------------------------------------------------
@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return load_policy([FIXTURE])


def test_for_each_and_references_resolve_to_real_names(policy) -> None:  # type: ignore[no-untyped-def]
    members = {m for b in policy.buckets[ACME] for m in b.members}
    # `${google_service_account.run-sa[each.key].email}` -> the email Google derives.
    assert f"serviceAccount:{RUN_ACME}" in members
    assert f"serviceAccount:{CLIENT_ACME}" in members
    assert set(policy.buckets) == {ACME, GLOBEX}
    assert policy.bucket_projects == {ACME: "demo-proj", GLOBEX: "demo-proj"}
    assert not policy.unresolved


@pytest.mark.parametrize(
    ("principal", "permission", "bucket", "obj", "prefix", "allowed"),
    [
        (RUN_ACME, "storage.objects.get", ACME, "inputs/j/b/x", None, True),
        (RUN_ACME, "storage.objects.list", ACME, None, "", True),
        (RUN_ACME, "storage.objects.create", ACME, "outputs/j/b/x", None, True),
        (RUN_ACME, "storage.objects.delete", ACME, "outputs/j/b/x", None, True),
        (RUN_ACME, "storage.objects.create", ACME, "inputs/j/b/x", None, False),
        (RUN_ACME, "storage.objects.get", GLOBEX, "inputs/j/b/x", None, False),
        (RUN_ACME, "storage.objects.list", GLOBEX, None, "", False),
        (CLIENT_ACME, "storage.objects.create", ACME, "inputs/j/b/x", None, True),
        (CLIENT_ACME, "storage.objects.delete", ACME, "inputs/j/b/x", None, False),
        (CLIENT_ACME, "storage.objects.get", ACME, "outputs/j/b/x", None, True),
        (CLIENT_ACME, "storage.objects.get", ACME, "inputs/j/b/x", None, False),
        # A list is checked on the bucket: only the objectListPrefix condition can match it.
        (CLIENT_ACME, "storage.objects.list", ACME, None, "outputs/j/", True),
        (CLIENT_ACME, "storage.objects.list", ACME, None, "", False),
        (CLIENT_ACME, "storage.objects.list", ACME, None, "inputs/", False),
        (CLIENT_ACME, "storage.objects.get", GLOBEX, "outputs/j/b/x", None, False),
        (OPERATOR, "storage.objects.delete", GLOBEX, "anything", None, True),
    ],
)
def test_authorization_follows_the_bindings(  # type: ignore[no-untyped-def]
    policy, principal, permission, bucket, obj, prefix, allowed
) -> None:
    assert policy.allows(Request(principal, permission, bucket, obj, prefix)) is allowed


def test_role_table_matches_documented_roles() -> None:
    # https://cloud.google.com/storage/docs/access-control/iam-roles
    assert role_grants("roles/storage.objectViewer", "storage.objects.list")
    assert not role_grants("roles/storage.objectCreator", "storage.objects.delete")
    assert not role_grants("roles/storage.objectCreator", "storage.objects.get")
    assert role_grants("roles/storage.objectUser", "storage.objects.delete")
    assert not role_grants("roles/storage.objectUser", "storage.buckets.get")
    assert role_grants("roles/storage.objectAdmin", "storage.objects.setIamPolicy")
    assert not role_grants("roles/storage.unknownRole", "storage.objects.get")


def test_a_condition_that_does_not_evaluate_denies(tmp_path: Path) -> None:
    doc = json.loads(FIXTURE.read_text())
    doc["resource"]["google_storage_bucket_iam_member"]["run-viewer"]["condition"] = {
        "title": "broken", "expression": "resource.name.startsWith(1)"}
    path = tmp_path / "cdk.tf.json"
    path.write_text(json.dumps(doc))
    p = load_policy([path])
    assert not p.allows(Request(RUN_ACME, "storage.objects.get", ACME, "inputs/x"))


# ---- request -> permission -------------------------------------------------------------------
def test_json_api_requests_map_to_permissions() -> None:
    get = classify("GET", "/storage/v1/b/bkt/o/a%2Fb.txt", {"alt": "media"})
    assert get == [Need("storage.objects.get", "bkt", "a/b.txt")]
    lst = classify("GET", "/storage/v1/b/bkt/o", {"prefix": "outputs/"})
    assert lst == [Need("storage.objects.list", "bkt", None, "outputs/")]
    assert classify("DELETE", "/storage/v1/b/bkt/o/x", {}) == [
        Need("storage.objects.delete", "bkt", "x")]
    assert classify("PATCH", "/storage/v1/b/bkt/o/x", {}) == [
        Need("storage.objects.update", "bkt", "x")]
    assert classify("GET", "/storage/v1/b/bkt", {}) == [Need("storage.buckets.get", "bkt")]
    assert classify("GET", "/download/storage/v1/b/bkt/o/a%2Fb", {}) == [
        Need("storage.objects.get", "bkt", "a/b")]
    assert isinstance(classify("POST", "/batch/storage/v1", {}), Unmapped)


def test_uploads_name_the_object_and_say_whether_they_may_overwrite() -> None:
    body = (b'--XyZ\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n'
            b'{"name": "outputs/j/r.txt"}\r\n--XyZ\r\ncontent-type: text/plain\r\n\r\nhi\r\n'
            b'--XyZ--')
    ctype = 'multipart/related; boundary="XyZ"'
    need = classify("POST", "/upload/storage/v1/b/bkt/o", {"uploadType": "multipart"}, body, ctype)
    assert need == [Need("storage.objects.create", "bkt", "outputs/j/r.txt", overwrite_check=True)]
    once = classify("POST", "/upload/storage/v1/b/bkt/o",
                    {"uploadType": "multipart", "ifGenerationMatch": "0"}, body, ctype)
    assert once == [Need("storage.objects.create", "bkt", "outputs/j/r.txt")]
    media = classify("POST", "/upload/storage/v1/b/bkt/o", {"uploadType": "media", "name": "a/b"})
    assert media == [Need("storage.objects.create", "bkt", "a/b", overwrite_check=True)]


def test_xml_api_requests_map_to_permissions() -> None:
    assert classify("GET", "/bkt/a/b.txt", {}) == [Need("storage.objects.get", "bkt", "a/b.txt")]
    assert classify("GET", "/bkt", {"prefix": "p/"}) == [
        Need("storage.objects.list", "bkt", None, "p/")]
    assert classify("PUT", "/bkt/o", {}) == [
        Need("storage.objects.create", "bkt", "o", overwrite_check=True)]


def test_identity_tokens_round_trip() -> None:
    assert email_from_authorization(f"Bearer {token_for(RUN_ACME)}") == RUN_ACME
    assert email_from_authorization("Bearer ya29.real-google-token") is None
    assert email_from_authorization(None) is None
    with pytest.raises(ValueError):
        token_for("not-an-email")


# ---- the proxy in front of fake-gcs-server ----------------------------------------------------
@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("iam")
    stack = root / "cdk.tf.json"
    shutil.copy(FIXTURE, stack)
    with fake_gcs() as upstream:
        port = free_port()
        proc = start_iam_proxy(root, port, upstream, [stack])
        try:
            endpoint = f"http://127.0.0.1:{port}"
            admin = _client(endpoint, ADMIN_EMAIL)
            for name in (ACME, GLOBEX):
                admin.create_bucket(name)
            admin.bucket(ACME).blob("inputs/j/b1/a.txt").upload_from_string(b"acme data")
            admin.bucket(GLOBEX).blob("outputs/j/b1/r.txt").upload_from_string(b"globex result")
            yield endpoint, stack
        finally:
            terminate(proc.pid, 5)


def _client(endpoint: str, email: str | None) -> storage.Client:
    creds = credentials_for(email) if email else AnonymousCredentials()  # type: ignore[no-untyped-call]
    return storage.Client(project="demo-proj", credentials=creds,
                          client_options={"api_endpoint": endpoint})


def test_no_identity_is_401_login_required(proxy: tuple[str, Path]) -> None:
    endpoint, _ = proxy
    resp = requests.get(f"{endpoint}/storage/v1/b/{ACME}/o", timeout=10)
    assert resp.status_code == 401
    assert resp.json()["error"]["errors"][0]["reason"] == "required"
    assert resp.json()["error"]["message"] == "Login Required"


def test_cross_tenant_read_is_403_with_gcs_error_body(proxy: tuple[str, Path]) -> None:
    endpoint, _ = proxy
    resp = requests.get(
        f"{endpoint}/storage/v1/b/{GLOBEX}/o/outputs%2Fj%2Fb1%2Fr.txt", params={"alt": "media"},
        headers={"Authorization": f"Bearer {token_for(CLIENT_ACME)}"}, timeout=10)
    assert resp.status_code == 403
    err = resp.json()["error"]
    assert err["code"] == 403 and err["errors"][0]["reason"] == "forbidden"
    assert "Permission 'storage.objects.get' denied" in err["message"]
    assert CLIENT_ACME in err["message"]
    with pytest.raises(gexc.Forbidden, match=r"storage\.objects\.get"):
        _client(endpoint, CLIENT_ACME).bucket(GLOBEX).blob("outputs/j/b1/r.txt").download_as_bytes()
    with pytest.raises(gexc.Forbidden, match=r"storage\.objects\.list"):
        list(_client(endpoint, RUN_ACME).list_blobs(GLOBEX, prefix="outputs/"))
    with pytest.raises(gexc.Forbidden, match=r"storage\.objects\.create"):
        _client(endpoint, RUN_ACME).bucket(GLOBEX).blob("outputs/x").upload_from_string(b"x")


def test_own_bucket_works_for_run_and_client_identities(proxy: tuple[str, Path]) -> None:
    endpoint, _ = proxy
    run = _client(endpoint, RUN_ACME).bucket(ACME)
    assert run.blob("inputs/j/b1/a.txt").download_as_bytes() == b"acme data"
    run.blob("outputs/j/b1/a.txt").upload_from_string(b"ACME DATA", if_generation_match=0)
    assert [b.name for b in run.client.list_blobs(ACME, prefix="outputs/")] == [
        "outputs/j/b1/a.txt"]
    run.blob("outputs/j/b1/a.txt").upload_from_string(b"again")  # overwrite: objectUser deletes
    client = _client(endpoint, CLIENT_ACME)
    assert client.bucket(ACME).blob("outputs/j/b1/a.txt").download_as_bytes() == b"again"
    names = [b.name for b in client.list_blobs(ACME, prefix="outputs/j/")]
    assert names == ["outputs/j/b1/a.txt"]
    with pytest.raises(gexc.Forbidden, match=r"storage\.objects\.list"):
        list(client.list_blobs(ACME))  # no prefix: the objectListPrefix condition is false


def test_overwriting_needs_delete(proxy: tuple[str, Path]) -> None:
    endpoint, _ = proxy
    blob = _client(endpoint, CLIENT_ACME).bucket(ACME).blob("inputs/j/b2/once.txt")
    blob.upload_from_string(b"first")
    with pytest.raises(gexc.Forbidden, match=r"storage\.objects\.delete"):
        blob.upload_from_string(b"second")


def test_a_new_synth_is_enforced_without_restart(proxy: tuple[str, Path]) -> None:
    endpoint, stack = proxy
    doc = json.loads(stack.read_text())
    grants = doc["resource"]["google_storage_bucket_iam_member"]
    saved = grants.pop("run-viewer")
    stack.write_text(json.dumps(doc))
    try:
        generation = reload_iam(endpoint)  # the reload hook: no sleep to outlast the poll
        with pytest.raises(gexc.Forbidden, match=r"storage\.objects\.list"):
            list(_client(endpoint, RUN_ACME).list_blobs(ACME, prefix="inputs/"))
    finally:
        grants["run-viewer"] = saved
        stack.write_text(json.dumps(doc))
        assert reload_iam(endpoint) == generation + 1
    assert list(_client(endpoint, RUN_ACME).list_blobs(ACME, prefix="inputs/"))


def test_submit_storage_client_acts_as_the_local_principal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from submit import backend as seam
    from submit import gcs

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
    monkeypatch.delenv("GPUB_LOCAL_PRINCIPAL", raising=False)
    assert isinstance(gcs.make_client("p")._credentials, AnonymousCredentials)
    # bin/submit --local: backend_for(True, settings.operator_sa_email) names the principal.
    local = seam.backend_for(True, OPERATOR)
    monkeypatch.setattr(local, "endpoints", lambda: _FakeBackend().ensure_running())
    assert local.storage("p")._credentials.token == token_for(OPERATOR)
    # GPUB_LOCAL_PRINCIPAL (bin/demo acting as a client) wins over the command's principal.
    monkeypatch.setenv("GPUB_LOCAL_PRINCIPAL", RUN_ACME)
    assert local.storage("p")._credentials.token == token_for(RUN_ACME)


class _FakeBackend:
    def ensure_running(self) -> object:
        class Ep:
            gcs_endpoint = "http://127.0.0.1:1"

        return Ep()


def test_the_policy_follows_a_changed_stack_file(tmp_path: Path) -> None:
    """The file poll (what a running layer does on its own), with the poll interval at 0."""
    from local.iam_proxy import PolicySource

    stack = tmp_path / "cdk.tf.json"
    shutil.copy(FIXTURE, stack)
    source = PolicySource([stack], check_every_s=0)
    req = Request(RUN_ACME, "storage.objects.list", ACME, None, "inputs/")
    assert source.current().allows(req)
    doc = json.loads(stack.read_text())
    del doc["resource"]["google_storage_bucket_iam_member"]["run-viewer"]
    stack.write_text(json.dumps(doc))
    stamp = stack.stat().st_mtime + 1  # a new mtime even within one clock tick
    os.utime(stack, (stamp, stamp))
    assert not source.current().allows(req)
