"""ClientOnboarding: one call adds a client of the platform (tenancy v2, see docs/clients.md).

Per client: its own bucket `<project>-<client>` (notifying the platform's uploads topic of new
objects under `inputs/`), a client identity `client-<c>` that writes `inputs/` and reads
`outputs/` there, a run-time identity `run-<c>` that the client's Batch tasks run as (get and
list on that bucket, create/overwrite/delete under `outputs/`), a results topic and the client's
subscription. Nothing per (client, job): the jobs' dispatcher workflows and triggers are per
job (`stacks/batch_job.py`) and list their clients in their source. The entries go to the
platform's shared `for_each` resources (`stacks/client_resources.py`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from stacks import layout
from stacks.budget import MAX_BUDGET_CHANNELS, client_budget_usd
from stacks.client_costs import ClientBudget, ClientChannel
from stacks.client_messaging import (
    Publisher,
    ResultsSubscription,
    ResultsSubscriptionPolicy,
    ResultsTopic,
    ResultsTopicPolicy,
    Schedule,
    SecretAccess,
)
from stacks.client_resources import ClientResources
from stacks.client_storage import (
    BucketPolicy,
    ClientAccount,
    ClientAccountPolicy,
    ClientBucket,
    Notification,
    RunAccount,
    RunAccountPolicy,
)
from stacks.conditions import bucket_list, objects_under
from stacks.layout import INPUTS, MARKERS, OUTPUTS, TenancyLayout
from stacks.monitoring import client_channel_name
from stacks.props import JobLink, PlatformIdentities
from stacks.settings import (
    ClientSettings,
    EnvironmentSettings,
    check_client_name,
    check_service_account_id,
)
from stacks.validation import EMAIL_RE, client_sa_description, terraform_escape
from tfjson.iam import PolicyBinding, policy_data

# At most 10 notification configurations per event type per bucket
# (cloud.google.com/storage/docs/pubsub-notifications): one per job of the client.
MAX_JOBS_PER_CLIENT = 10


def client_grants(
    bucket: str, client_member: str, run_member: str, operator_member: str,
    workflow_member: str,
) -> dict[str, dict[str, Any]]:
    """The bucket grants of one client: key suffix -> grant (`expression` None: no condition).

    Plain bucket-level roles for the run identity (the bucket is the boundary): a list is
    authorized on the bucket, never on an object, so an object-name condition cannot allow it
    (cloud.google.com/storage/docs/access-control/iam-permissions); overwriting or deleting
    (a retried task rewrites `_errors/`, `_tasks/`, `_callback.json`) needs
    `storage.objects.delete`, which objectCreator lacks (cloud.google.com/storage/docs/
    access-control/iam-roles), hence objectUser, limited to `outputs/`. Operators (`bin/submit
    --client`) read the bucket and write manifests and run records under `outputs/`, like the
    run identity.
    """
    return {
        "client-creates-inputs": {
            "role": "roles/storage.objectCreator",
            "member": client_member,
            "expression": objects_under(bucket, INPUTS),
            "description": f"the client uploads under {INPUTS}",
        },
        # Re-running a batch is writing its marker again (a new generation): overwriting
        # needs storage.objects.delete, which objectCreator lacks; on markers only.
        "client-rewrites-markers": {
            "role": "roles/storage.objectUser",
            "member": client_member,
            "expression": objects_under(bucket, layout.MARKERS),
            "description": f"the client re-marks its batches under {MARKERS} (re-runs)",
        },
        "client-reads-outputs": {
            "role": "roles/storage.objectViewer",
            "member": client_member,
            "expression": objects_under(bucket, OUTPUTS),
            "description": f"the client reads under {OUTPUTS}",
        },
        "client-lists": {
            "role": "roles/storage.objectViewer",
            "member": client_member,
            "expression": bucket_list(bucket),
            "description": "the client lists its own bucket (names only)",
        },
        "run-reads": {
            "role": "roles/storage.objectViewer",
            "member": run_member,
            "expression": None,
            "description": "the client's tasks get and list its bucket",
        },
        "run-writes-outputs": {
            "role": "roles/storage.objectUser",
            "member": run_member,
            "expression": objects_under(bucket, OUTPUTS),
            "description": f"the client's tasks create, overwrite and delete under {OUTPUTS}",
        },
        "operator-reads": {
            "role": "roles/storage.objectViewer",
            "member": operator_member,
            "expression": None,
            "description": "operators get and list the client's bucket",
        },
        "operator-writes-outputs": {
            "role": "roles/storage.objectUser",
            "member": operator_member,
            "expression": objects_under(bucket, OUTPUTS),
            "description": f"operators write manifests and run records under {OUTPUTS}",
        },
        # The job workflows read markers, list them (the schedule sweep) and the output's
        # `_errors/`, and write run records and outcomes under outputs/ (compare-and-swap on
        # `_run.json` needs delete: objectUser).
        "workflow-reads-markers": {
            "role": "roles/storage.objectViewer",
            "member": workflow_member,
            "expression": objects_under(bucket, layout.MARKERS),
            "description": "job workflows read batch markers",
        },
        "workflow-lists-markers": {
            "role": "roles/storage.objectViewer",
            "member": workflow_member,
            "expression": bucket_list(bucket, layout.MARKERS),
            "description": "job workflows list batch markers (schedule sweeps)",
        },
        "workflow-lists-outputs": {
            "role": "roles/storage.objectViewer",
            "member": workflow_member,
            "expression": bucket_list(bucket, OUTPUTS),
            "description": f"job workflows list {OUTPUTS} (a run's _errors/)",
        },
        "workflow-writes-outputs": {
            "role": "roles/storage.objectUser",
            "member": workflow_member,
            "expression": objects_under(bucket, OUTPUTS),
            "description": "job workflows read and write run records and outcomes",
        },
    }


@dataclass(frozen=True)
class ClientProps:
    """What onboarding one client needs from the platform."""

    settings: EnvironmentSettings
    resources: ClientResources  # the shared for_each resources the entries go to
    identities: PlatformIdentities
    jobs: Mapping[str, JobLink]  # the environment's jobs, by name
    onboarded: Collection[str]  # clients onboarded so far (a name is onboarded once)


class ClientOnboarding:
    """Everything one client needs, from one `ClientSettings`: entries in its stack's
    `ClientResources` under the keys `<client>` and `<client>/<what>`."""

    def __init__(self, props: ClientProps, client: ClientSettings) -> None:
        jobs = _validate(props, client)  # before any entry exists
        self.props = props
        self.client = client
        settings = props.settings
        name = client.name
        self.bucket = settings.client_bucket(name)
        self.labels = {**settings.all_labels(), **client.labels, "client": name}
        self.member = f"serviceAccount:{ClientAccount.ref(name, 'email')}"
        self.run_member = f"serviceAccount:{RunAccount.ref(name, 'email')}"
        self._bucket_and_identities()
        self._bucket_grants()
        self._results()
        self._add_costs()

        # --- per job: the job's markers notify its intake topic; its secrets and topics -------
        for job in jobs:
            self._add_job(job)
        for i, schedule in enumerate([] if client.leaving else client.schedules):
            self._add_schedule(i, schedule.job, schedule.cron, schedule.time_zone,
                               schedule.input_prefix)

    def _bucket_and_identities(self) -> None:
        """The bucket (its data, policy, CMEK, retention and labels), `client-<c>`, `run-<c>`,
        and who may act as them: each account's whole IAM policy."""
        res, settings, client = self.props.resources, self.props.settings, self.client
        ids = self.props.identities
        name = client.name
        res.add(name, ClientBucket(name=self.bucket, labels=self.labels))
        description = client_sa_description(name, client.contact)  # <= 256 bytes
        res.add(name, ClientAccount(account_id=settings.client_sa_id(name),
                                    display_name=description[:100], description=description))
        run_description = f"Tasks of client {name}'s jobs: its bucket only"
        res.add(name, RunAccount(account_id=settings.run_sa_id(name),
                                 display_name=run_description, description=run_description))
        res.add(name, RunAccountPolicy(
            service_account=RunAccount.ref(name, "name"), policy_data=policy_data([
                PolicyBinding("roles/iam.serviceAccountUser",
                              [ids.workflow_member, ids.operator_member])])))
        if client.principal is not None:
            res.add(name, ClientAccountPolicy(
                service_account=ClientAccount.ref(name, "name"), policy_data=policy_data([
                    PolicyBinding("roles/iam.serviceAccountTokenCreator", [client.principal])])))

    def _bucket_grants(self) -> None:
        """The bucket's policy (`client_grants`): plain roles, and roles under a condition
        (titled `<c>-<grant>`), all in one authoritative `policy_data`."""
        res, ids, name = self.props.resources, self.props.identities, self.client.name
        grants = client_grants(self.bucket, self.member, self.run_member,
                               ids.operator_member, ids.workflow_member)
        bindings = [
            PolicyBinding(g["role"], [g["member"]]) if g["expression"] is None else
            PolicyBinding(g["role"], [g["member"]], g["expression"], f"{name}-{suffix}",
                          g["description"])
            for suffix, g in grants.items()]
        res.add(name, BucketPolicy(bucket=ClientBucket.ref(name, "name"),
                                   policy_data=policy_data(bindings)))

    def _results(self) -> None:
        """The results topic and subscription: who reads them and who publishes."""
        res, settings, client = self.props.resources, self.props.settings, self.client
        ids = self.props.identities
        name = client.name
        res.add(name, ResultsTopic(name=settings.results_topic(name), labels=self.labels))
        topic_name = ResultsTopic.ref(name, "name")
        res.add(name, ResultsSubscription(name=settings.layout.results_subscription(name),
                                          topic=ResultsTopic.ref(name, "id"),
                                          labels=self.labels))
        readers = [self.member, *([client.principal] if client.principal is not None else [])]
        res.add(name, ResultsSubscriptionPolicy(
            subscription=ResultsSubscription.ref(name, "name"),
            policy_data=policy_data([PolicyBinding("roles/pubsub.subscriber", readers)])))
        # The workflow publishes outcomes; Batch publishes failure notifications as the job's
        # identity (the client's run account).
        res.add(name, ResultsTopicPolicy(topic=topic_name, policy_data=policy_data([
            PolicyBinding("roles/pubsub.publisher", [ids.workflow_member, self.run_member])])))

    def _add_costs(self) -> None:
        """The client's email channel (its contact) and monthly budget (docs/costs.md); both
        were constructs of their own before, hence the moves."""
        res = self.props.resources
        settings = self.props.settings
        client = self.client
        name = client.name
        own: list[str] = []
        if client.contact and EMAIL_RE.match(client.contact):
            res.add(name, ClientChannel(display_name=client_channel_name(settings, client),
                                        email=client.contact))
            res.moved_from(_legacy_address("google_monitoring_notification_channel",
                                           "channels", settings.client_sa_id(name)),
                           ClientChannel, name)
            own = [ClientChannel.ref(name, "name")]
        billing = res.props.billing
        if billing is not None:
            res.add(name, ClientBudget(
                display_name=f"gpu-batch-{settings.name}-{name}", client=name,
                units=str(int(client_budget_usd(settings, client))),
                channels=(own + list(billing.env_channels))[:MAX_BUDGET_CHANNELS]))
            res.moved_from(_legacy_address("google_billing_budget", "client-budgets", name),
                           ClientBudget, name)

    def _add_job(self, job: JobLink) -> None:
        res = self.props.resources
        name = self.client.name
        if self.client.leaving:
            return  # offboarding phase 1: a leaving client's markers start nothing
        # The job's markers in this bucket notify the job's intake topic (one execution each).
        res.add(f"{name}/{job.spec.name}", Notification(
            bucket=ClientBucket.ref(name, "name"), topic=job.intake_topic,
            prefix=self.props.settings.layout.job_markers(job.spec.name)))
        for secret_id in job.secrets:
            key = f"{name}/secret-{secret_id}"
            if not res.has(SecretAccess, key):
                res.add(key, SecretAccess(secret=secret_id, member=self.run_member))
        for topic in job.notification_topics:
            key = f"{name}/notify-{topic}"
            if not res.has(Publisher, key):
                res.add(key, Publisher(topic=topic, member=self.run_member))

    def _add_schedule(
        self, index: int, job: str, cron: str, time_zone: str, input_prefix: str
    ) -> None:
        settings = self.props.settings
        client = self.client.name
        uri = (
            f"https://workflowexecutions.googleapis.com/v1/projects/{settings.project_id}"
            f"/locations/{settings.region}/workflows/{settings.job_workflow(job)}/executions"
        )
        # Executions take their argument as a JSON string inside the JSON body.
        argument = json.dumps(
            {"client": client, "input_prefix": input_prefix, "trigger": "schedule"}
        )
        body = json.dumps({"argument": argument, "callLogLevel": "LOG_ERRORS_ONLY"})
        self.props.resources.add(f"{client}/schedule-{index}", Schedule(
            name=settings.schedule_name(client, job, index),
            # Map values are Terraform templates: free text is escaped.
            description=terraform_escape(
                f"{job} for {client} on {input_prefix or 'all inputs'}"),
            schedule=cron,
            time_zone=time_zone,
            uri=uri,
            body=base64.b64encode(body.encode()).decode(),
        ))


def _legacy_address(rtype: str, *path: str) -> str:
    """The address cdktf gave a construct at `path` under the stack: the path joined by `_`,
    then `_` and 8 hex digits (upper case) of the md5 of the path joined by `/` (checked
    against a synthesized stack in tests/test_client_shards.py)."""
    digest = hashlib.md5("/".join(path).encode(), usedforsecurity=False).hexdigest()[:8]
    return f"{rtype}.{'_'.join(path)}_{digest.upper()}"


def _validate(props: ClientProps, client: ClientSettings) -> list[JobLink]:
    """Synth-time checks that span the client and the platform; errors name the field."""
    where = f"clients.{client.name}"
    settings = props.settings
    stack = settings.stack_name
    try:
        check_client_name(client.name)
    except ValueError as exc:
        raise ValueError(f"clients.name: {exc}") from None
    for account_id in (settings.client_sa_id(client.name), settings.run_sa_id(client.name)):
        try:
            check_service_account_id(account_id)
        except ValueError as exc:
            raise ValueError(f"clients.name: {client.name!r}: {exc}") from None
    if len(settings.client_bucket(client.name)) > 63:
        raise ValueError(
            f"clients.name: {client.name!r} makes the bucket name "
            f"{settings.client_bucket(client.name)!r} longer than 63 chars"
        )
    if client.name in props.onboarded:
        raise ValueError(f"clients: {client.name!r} is onboarded twice in {stack}")
    if not client.jobs:
        raise ValueError(f"{where}.jobs: a client needs at least one job")
    if len(client.jobs) > MAX_JOBS_PER_CLIENT:
        raise ValueError(
            f"{where}.jobs: {len(client.jobs)} jobs; a client may have at most "
            f"{MAX_JOBS_PER_CLIENT} (each job's markers need one of the bucket's 10 "
            "OBJECT_FINALIZE notification configurations)"
        )
    if len(set(client.jobs)) != len(client.jobs):
        raise ValueError(f"{where}.jobs: {client.jobs} names a job twice")
    known = ", ".join(sorted(props.jobs)) or "none"
    jobs: list[JobLink] = []
    for name in client.jobs:
        if name not in props.jobs:
            raise ValueError(f"{where}.jobs: {name!r} is not a job of {stack} (known: {known})")
        job = props.jobs[name]
        fmt = job.spec.input_format
        if fmt is not None and fmt not in client.upload_formats:
            raise ValueError(
                f"{where}.upload_formats: job {name!r} reads {fmt!r} inputs but "
                f"{client.name} uploads only {', '.join(client.upload_formats)}"
            )
        jobs.append(job)
    for i, schedule in enumerate(client.schedules):
        if schedule.job not in client.jobs:
            raise ValueError(
                f"{where}.schedules[{i}].job: {schedule.job!r} is not one of the client's jobs "
                f"({', '.join(client.jobs)})"
            )
        if schedule.input_prefix.startswith("/") or ".." in schedule.input_prefix.split("/"):
            raise ValueError(
                f"{where}.schedules[{i}].input_prefix: {schedule.input_prefix!r} must be "
                f"relative to {TenancyLayout.job_inputs(schedule.job)}"
            )
    return jobs
