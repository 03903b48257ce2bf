"""The deployed workflows, read from the synthesized stack and run unchanged on this machine.

- Source: `google_workflows_workflow.source_contents` after Terraform's substitutions (locals
  via `replace()`, resource references, `$${` -> `${`), evaluated by `tfjson`.
- Syntax: checked against the Workflows JSON schema shipped with workflows-emulator; a source
  it rejects fails here before anything runs (`WorkflowSyntaxError`).
- Interpreter: workflows-emulator (PyPI `workflows-emulator`, pinned). Its own connectors call
  the real googleapis.com endpoints; here every `googleapis.*` call goes to
  `local.connectors` (the local Batch server, GCS through the IAM layer as the workflow's
  service account, the local Pub/Sub).
- Runtime argument: the CloudEvent Eventarc delivers, as a JSON object
  (https://cloud.google.com/workflows/docs/trigger-workflow-eventarc).
- Limits: memory of variables, steps per execution and source size as Workflows enforces them
  (`local.workflow_limits`).
"""

from __future__ import annotations

import base64
import contextvars
import copy
import json
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml

from local.connectors import Connectors
from local.pubsub_stack import Trigger
from local.workflow_limits import Budget, ResourceLimitExceeded, budget, check_source_size
from local.workflow_limits import install as install_limits
from tfjson import INTERPOLATION_RE, facts_from_document, instances

_CURRENT: contextvars.ContextVar[Connectors] = contextvars.ContextVar("local_connectors")


class WorkflowSyntaxError(ValueError):
    """The source is not a workflow Workflows would deploy."""


class WorkflowFailed(RuntimeError):
    """The execution ended with an uncaught error (the execution's FAILED state)."""

    def __init__(self, message: str, payload: Any) -> None:
        super().__init__(message)
        self.payload = payload


@dataclass(frozen=True)
class DeployedWorkflow:
    address: str
    name: str
    project: str
    region: str
    service_account: str
    source: str
    env: tuple[tuple[str, str], ...] = ()

    @property
    def id(self) -> str:
        return f"projects/{self.project}/locations/{self.region}/workflows/{self.name}"


def _emulator() -> Any:
    """workflows_emulator.main, importable next to cdktn's pinned typeguard 2.13.3, with the
    local cloud's corrections applied once (each below says what Workflows does instead).

    workflows-emulator 1.10.0 calls `typeguard.install_import_hook` (typeguard >= 4) for module
    names ('lib_http', ...) that match no importable module, so the hook never instruments
    anything; a no-op stands in for it when typeguard 2 is installed."""
    import typeguard

    if not hasattr(typeguard, "install_import_hook"):
        typeguard.install_import_hook = lambda *_a, **_k: None  # type: ignore[attr-defined]
    from workflows_emulator import main

    if not getattr(main.StepCall, "_gpub_local", False):
        _patch_maps()
        _patch_sleep(main)
        _patch_connectors(main)
        _patch_render()
        _patch_assign(main)
        _patch_retry_predicates()
        main.StepCall._gpub_local = True
    install_limits(main)
    return main


def _patch_maps() -> None:
    """In Workflows `listing.items` is the map's "items" key (GCS and Pub/Sub answers carry
    one); the emulator's attribute-dicts return dict.items instead. Keys win for "items".
    Maps reach expressions as ContextDicts; get_type() must still call them "map"."""
    from workflows_emulator.lib import helpers
    from workflows_emulator.utils import ContextDict

    def getattribute(self: Any, name: str) -> Any:
        if name == "items" and dict.__contains__(self, "items"):
            return dict.__getitem__(self, "items")
        return dict.__getattribute__(self, name)

    ContextDict.__getattribute__ = getattribute  # type: ignore[method-assign]
    helpers.TYPE_LOOKUP[ContextDict] = "map"


def _patch_sleep(main: Any) -> None:
    """LOCAL_WORKFLOWS_SLEEP_SCALE speeds up a workflow's own polling waits (the deployed
    dispatcher sleeps 60 s between jobs.get calls); 1 is real time. A `retry` step's backoff
    waits like `sys.sleep` (scaled), not in real time."""
    from workflows_emulator.lib import sys_utils

    def sleep(seconds: float) -> None:
        conn = _CURRENT.get()
        if conn.abandoned.wait(float(seconds) * conn.sleep_scale):
            raise RuntimeError("local workflows: execution abandoned")

    sys_utils.sleep = sleep
    main.sleep = sleep


def _patch_connectors(main: Any) -> None:
    """Connector calls go to the local cloud's connectors (local/connectors.py)."""

    def execute_connector(rendered_step: Mapping[str, Any]) -> Any:
        return _CURRENT.get().call(str(rendered_step["call"]),
                                   dict(rendered_step.get("args") or {}))

    main.StepCall.execute_connector = staticmethod(execute_connector)


def _patch_render() -> None:
    """`hash.compute_checksum(data, algorithm)` -> bytes (cloud.google.com/workflows/docs/
    reference/stdlib/hash/compute_checksum); the emulator has no `hash` module. A value that
    is one whole `${...}` is the expression's value in Workflows (null, a map, a list); the
    emulator prints it with str() and parses that back as YAML, which turns null into "None"
    and a map's nulls into "None"."""
    from workflows_emulator import render

    render.STANDARD_LIBRARY["hash"] = _HashModule()
    original_render = render.render_str

    def render_str(value: Any, context: Any) -> Any:
        if (isinstance(value, str) and value.startswith("${") and value.endswith("}")
                and value.count("${") == 1 and value.count("}") == 1):
            return _plain(render.run_code(value[2:-1], context))
        return original_render(value, context)

    render.render_str = render_str


def _patch_assign(main: Any) -> None:
    """An assign whose expression raises (caught by a `try`) left the emulator's global
    assign lock held: every later assign hung. Release it on the way out."""
    assign = main.StepAssign.execute

    def assign_step(self: Any) -> Any:
        try:
            return assign(self)
        except BaseException:
            if main.LOCK.locked():
                main.LOCK.release()
            raise

    main.StepAssign.execute = assign_step


def _patch_retry_predicates() -> None:
    """`http.default_retry_predicate` (and its non-idempotent twin) read `e.code`, which an
    error without an HTTP status lacks (a connector's TimeoutError, an OperationError): the
    predicate itself raised instead of answering. In Workflows it retries on the codes or the
    tags, whichever the error carries."""
    from workflows_emulator.lib import http_utils

    for predicate in (http_utils.default_retry_predicate,
                      http_utils.default_retry_predicate_non_idempotent):
        _tolerate_codeless_errors(predicate)


_PREDICATE_EDITS = (
    ("e.code in err_codes", 'map.get(e, "code") in err_codes'),
    ("set(e.tags)", 'set(default(map.get(e, "tags"), []))'),
    ("${e.tags[0]}: (${e.code}) ${e.message}", "${json.encode_to_string(e)}"),
)


def _tolerate_codeless_errors(predicate: dict[str, Any]) -> None:
    """Edit a workflows-emulator predicate subworkflow in place: `e` may lack code or tags."""
    def edit(value: Any) -> Any:
        if isinstance(value, str):
            for old, new in _PREDICATE_EDITS:
                value = value.replace(old, new)
            return value
        if isinstance(value, dict):
            for key in value:
                value[key] = edit(value[key])
        elif isinstance(value, list):
            value[:] = [edit(v) for v in value]
        return value

    edit(predicate)


def _plain(value: Any) -> Any:
    """Maps and lists as plain dicts and lists (the emulator's attribute-dicts unwrapped)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in dict.items(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


class _HashModule:
    """Workflows' `hash` module: MD5, SHA1, SHA224, SHA256, SHA384, SHA512 of bytes."""

    ALGORITHMS = ("MD5", "SHA1", "SHA224", "SHA256", "SHA384", "SHA512")

    @classmethod
    def compute_checksum(cls, data: Any, algorithm: str) -> bytes:
        import hashlib

        if not isinstance(data, bytes) or not isinstance(algorithm, str):
            raise TypeError("hash.compute_checksum: data must be bytes, algorithm a string")
        if algorithm not in cls.ALGORITHMS:
            raise ValueError(f"hash.compute_checksum: unsupported algorithm {algorithm!r}")
        return hashlib.new(algorithm.lower(), data).digest()


# ---- reading the stack -------------------------------------------------------------------
def _str(raw: Any) -> str:
    while isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    return raw if isinstance(raw, str) else ""


def terraform_string(raw: str, doc: Mapping[str, Any]) -> str:
    """A string attribute as Terraform would pass it to the provider."""
    facts = facts_from_document(doc)
    text = facts.resolve_text(raw)
    left = INTERPOLATION_RE.search(text)
    if left:
        raise WorkflowSyntaxError(f"unresolved Terraform interpolation {left.group(0)!r}")
    return text.replace("$${", "${").replace("%%{", "%{")


def _section(doc: Mapping[str, Any], rtype: str) -> Iterable[tuple[str, dict[str, Any]]]:
    section = doc.get("resource", {}).get(rtype, {})
    for name, conf in (section.items() if isinstance(section, dict) else ()):
        if isinstance(conf, dict):
            yield from ((f"{rtype}.{n}", c) for n, c in instances(name, conf))


_SA_ID_RE = re.compile(r"\$\{google_service_account\.([A-Za-z0-9_-]+)\.id\}")


def _service_account_email(facts: Any, raw: str) -> str:
    """The workflow's identity as an email. A service account's Terraform `id` is
    `projects/{project}/serviceAccounts/{email}`, a form `service_account` accepts
    (https://registry.terraform.io/providers/hashicorp/google/latest/docs/resources/google_service_account#attributes-reference,
    https://registry.terraform.io/providers/hashicorp/google/latest/docs/resources/workflows_workflow#service_account)."""
    text = facts.resolve_text(_SA_ID_RE.sub(r"${google_service_account.\1.email}", raw))
    return str(text).rsplit("/", 1)[-1]


def deployed_workflows(doc: Mapping[str, Any]) -> list[DeployedWorkflow]:
    facts = facts_from_document(doc)
    out = []
    for address, conf in _section(doc, "google_workflows_workflow"):
        env = conf.get("user_env_vars")
        out.append(DeployedWorkflow(
            address=address,
            name=_str(conf.get("name")),
            project=_str(conf.get("project")),
            region=_str(conf.get("region")),
            service_account=_service_account_email(facts, _str(conf.get("service_account"))),
            source=terraform_string(_str(conf.get("source_contents")), doc),
            env=tuple(sorted((str(k), str(v)) for k, v in
                             (env.items() if isinstance(env, dict) else ()))),
        ))
    return out


def workflow_for(trigger: Trigger, workflows: Iterable[DeployedWorkflow]) -> DeployedWorkflow:
    for wf in workflows:
        ref = trigger.workflow
        if ref in {wf.id, wf.name} or ref.endswith(f".{wf.address.split('.', 1)[1]}.id}}"):
            return wf
    raise LookupError(f"{trigger.address}: destination workflow {trigger.workflow!r} not found")


# ---- validation and execution ---------------------------------------------------------------
def parse_source(source: str, name: str = "workflow") -> Any:
    """The workflow definition; WorkflowSyntaxError where Workflows would refuse it."""
    import jsonschema

    too_big = check_source_size(name, source)
    if too_big:
        raise WorkflowSyntaxError(too_big)

    try:
        definition = yaml.safe_load(source)
    except yaml.YAMLError as exc:
        raise WorkflowSyntaxError(f"not YAML: {exc}".splitlines()[0]) from None
    main = _emulator()
    try:
        jsonschema.validate(definition, main.WORKFLOW_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise WorkflowSyntaxError(f"{where}: {exc.message}") from None
    return definition


def pubsub_cloudevent(topic: str, subscription: str, message: Any) -> dict[str, Any]:
    """The CloudEvent (google.cloud.pubsub.topic.v1.messagePublished) for one message, as the
    workflow receives it (https://cloud.google.com/eventarc/docs/workflows/cloudevents)."""
    published = message.publish_time
    stamp = (published.isoformat() if hasattr(published, "isoformat")
             else datetime.now(UTC).isoformat()).replace("+00:00", "Z")
    return {
        "specversion": "1.0",
        "id": message.message_id,
        "source": f"//pubsub.googleapis.com/{topic}",
        "type": "google.cloud.pubsub.topic.v1.messagePublished",
        "datacontenttype": "application/json",
        "time": stamp,
        "data": {
            "subscription": subscription,
            "message": {
                "data": base64.b64encode(bytes(message.data)).decode(),
                "attributes": dict(message.attributes),
                "messageId": message.message_id,
                "publishTime": stamp,
            },
        },
    }


def execute(wf: DeployedWorkflow, argument: Any, connectors: Connectors,
            limits: Budget | None = None) -> Any:
    """Run one execution; its result, or WorkflowFailed with the uncaught error (a Workflows
    limit exceeded included: `limits`, default Workflows' own)."""
    definition = parse_source(wf.source, wf.name)
    main = _emulator()
    from workflows_emulator.utils import WorkflowError

    if isinstance(definition, list):
        definition = {"main": {"steps": definition}}
    params = definition.get("main", {}).get("params") or []
    args = {str(params[0]): argument} if params else {}
    # Built-in environment variables (https://cloud.google.com/workflows/docs/reference/environment-variables).
    env = {
        "GOOGLE_CLOUD_PROJECT_ID": wf.project, "GOOGLE_CLOUD_LOCATION": wf.region,
        "GOOGLE_CLOUD_WORKFLOW_ID": wf.name, "GOOGLE_CLOUD_WORKFLOW_REVISION_ID": "000001-local",
        "GOOGLE_CLOUD_WORKFLOW_EXECUTION_ID": str(uuid.uuid4()), **dict(wf.env),
    }  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    token = _CURRENT.set(connectors)
    try:
        with budget(limits or Budget()) as used:
            used.memory(args)  # arguments and events count against the variables' memory
            return main.execute_workflow(copy.deepcopy(definition), args)
    except (WorkflowError, ResourceLimitExceeded) as exc:
        payload = exc.payload
        raise WorkflowFailed(f"{wf.name}: {json.dumps(payload, default=str)[:500]}",
                             payload) from None
    finally:
        _CURRENT.reset(token)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
