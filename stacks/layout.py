"""The tenancy layout: the one home of every name the platform derives from a client, a job or
a batch (identities, buckets, prefixes, the batch marker, topics, subscriptions).

Pure Python with no import of its own package's siblings, so stacks, the workflow generator,
the checks, `bin/submit`, the local cloud and the docs all ask here and never rebuild a name
by hand. `EnvironmentSettings.layout` binds it to a project. docs/contracts.md "Layout" shows
the same table.

Client bucket `<project>-<client>`:

    inputs/<job>/<batch>/<files...>     the batch's data (written by client-<c>; notifies nothing)
    inputs/_ready/<job>/<batch>         the batch marker: JSON {"count": N, ...}; its upload
                                        (OBJECT_FINALIZE, notification on `inputs/_ready/<job>/`)
                                        starts exactly one run of <job> for the batch
    outputs/<job>/<batch>/<files...>    the run's outputs (written by run-<c>)

Markers live under their own prefix because GCS notifications filter on an object-name prefix
only (cloud.google.com/storage/docs/pubsub-notifications): data objects then start nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

# Identities (service account ids; the email adds `@<project>.iam.gserviceaccount.com`).
CLIENT_SA_PREFIX = "client-"  # uploads inputs, reads outputs
RUN_SA_PREFIX = "run-"  # every task of every job of the client runs as this identity
ADHOC_SA_ID = "batch-adhoc"  # operators' ad-hoc runs on the data bucket
OPERATOR_SA_ID = "operator"  # the identity `bin/submit` acts as locally
WORKFLOW_SA_ID = "batch-workflows"  # the job workflows run as it
TRIGGER_SA_ID = "batch-trigger"  # Eventarc triggers
SCHEDULER_SA_ID = "batch-scheduler"  # Cloud Scheduler (client schedules)
# The pipeline's identities in each environment project (made by `bin/bootstrap`, never by the
# stacks): the deployer applies on main, the planner plans pull requests.
DEPLOYER_SA_ID = "deployer"
PLANNER_SA_ID = "planner"
SA_DOMAIN_SUFFIX = ".iam.gserviceaccount.com"

# Buckets.
DATA_BUCKET_SUFFIX = "-batch-data"
LOG_BUCKET_SUFFIX = "-batch-logs"
ADHOC_AREA = "jobs/"  # the data bucket's prefix for ad-hoc runs

# Prefixes of a client bucket.
INPUTS = "inputs/"
OUTPUTS = "outputs/"
MARKERS = f"{INPUTS}_ready/"  # below inputs/ so client-<c>'s create grant covers markers

# Bookkeeping of a batch's output folder.
RUN_RECORD = "_run.json"  # the run that owns the output (submit/ownership.py RunRecord)
PLAN = "_plan.json"  # what the job listed and accepted (the runner writes it)
ERRORS = "_errors/"  # one object per refused or failed input (the runner writes them)
OUTCOMES = "_outcomes/"  # `<marker generation>.json`: the one published outcome of a run

# Pub/Sub.
TOPIC_PREFIX = "batch-"
RESULTS_TOPIC_SUFFIX = "-results"
SUBSCRIPTION_SUFFIX = "-sub"
INTAKE_TOPIC_PREFIX = "batch-intake-"  # one per job: its markers' notifications
INTAKE_DEAD_LETTER_TOPIC = "batch-intake-dead-letter"
UPLOADS_TOPIC = "batch-uploads"  # tenancy v2's shared topic (retired by the per-job intake)

# Workflows and schedules.
WORKFLOW_PREFIX = "batch-"

# The task VMs' network (stacks/network.py): one VPC, one subnet per allowed region.
TASK_NETWORK = "batch-tasks"
CLIENTS_PROJECT_SUFFIX = "-clients"  # the default project of the client identities


def sa_email(account_id: str, project_id: str) -> str:
    return f"{account_id}@{project_id}{SA_DOMAIN_SUFFIX}"


def subscription_of(topic: str) -> str:
    """The subscription the stack declares for a topic it reads: `<topic>-sub`."""
    return f"{topic}{SUBSCRIPTION_SUFFIX}"


@dataclass(frozen=True)
class TenancyLayout:
    """Every derived name of one environment's project."""

    project_id: str
    # The project that holds the client identities `client-<c>`: outside the
    # platform project, so no grant to "all service accounts of the platform project" reaches
    # them. "" : the platform project (tests of the old layout only).
    clients_project_id: str = ""

    # Identities.
    def client_sa_id(self, client: str) -> str:
        return f"{CLIENT_SA_PREFIX}{client}"

    @property
    def client_identity_project(self) -> str:
        return self.clients_project_id or self.project_id

    def client_sa_email(self, client: str) -> str:
        return sa_email(self.client_sa_id(client), self.client_identity_project)

    def run_sa_id(self, client: str) -> str:
        return f"{RUN_SA_PREFIX}{client}"

    def run_sa_email(self, client: str) -> str:
        return sa_email(self.run_sa_id(client), self.project_id)

    @property
    def sa_domain(self) -> str:
        """What follows an account id in its email: `@<project>.iam.gserviceaccount.com`."""
        return f"@{self.project_id}{SA_DOMAIN_SUFFIX}"

    @property
    def adhoc_sa_email(self) -> str:
        return sa_email(ADHOC_SA_ID, self.project_id)

    @property
    def operator_sa_email(self) -> str:
        return sa_email(OPERATOR_SA_ID, self.project_id)

    @property
    def workflow_sa_email(self) -> str:
        return sa_email(WORKFLOW_SA_ID, self.project_id)

    @property
    def scheduler_sa_email(self) -> str:
        return sa_email(SCHEDULER_SA_ID, self.project_id)

    @property
    def deployer_sa_email(self) -> str:
        return sa_email(DEPLOYER_SA_ID, self.project_id)

    @property
    def planner_sa_email(self) -> str:
        return sa_email(PLANNER_SA_ID, self.project_id)

    # Buckets.
    def client_bucket(self, client: str) -> str:
        return f"{self.client_bucket_prefix}{client}"

    @property
    def client_bucket_prefix(self) -> str:
        return f"{self.project_id}-"

    @property
    def data_bucket(self) -> str:
        return f"{self.project_id}{DATA_BUCKET_SUFFIX}"

    @property
    def log_bucket(self) -> str:
        return f"{self.project_id}{LOG_BUCKET_SUFFIX}"

    # Object prefixes in a client bucket (all relative to the bucket).
    @staticmethod
    def job_inputs(job: str) -> str:
        return f"{INPUTS}{job}/"

    @staticmethod
    def batch_inputs(job: str, batch: str) -> str:
        return f"{INPUTS}{job}/{batch}/"

    @staticmethod
    def job_outputs(job: str) -> str:
        return f"{OUTPUTS}{job}/"

    @staticmethod
    def batch_outputs(job: str, batch: str) -> str:
        return f"{OUTPUTS}{job}/{batch}/"

    @staticmethod
    def job_markers(job: str) -> str:
        """The notification prefix of a job's markers."""
        return f"{MARKERS}{job}/"

    @staticmethod
    def marker(job: str, batch: str) -> str:
        return f"{MARKERS}{job}/{batch}"

    # Pub/Sub.
    @staticmethod
    def results_topic(client: str) -> str:
        return f"{TOPIC_PREFIX}{client}{RESULTS_TOPIC_SUFFIX}"

    @staticmethod
    def results_subscription(client: str) -> str:
        return subscription_of(TenancyLayout.results_topic(client))

    @staticmethod
    def intake_topic(job: str) -> str:
        return f"{INTAKE_TOPIC_PREFIX}{job}"

    @staticmethod
    def job_of_intake_topic(topic: str) -> str | None:
        name = topic.rsplit("/", 1)[-1]
        if name == INTAKE_DEAD_LETTER_TOPIC or not name.startswith(INTAKE_TOPIC_PREFIX):
            return None
        return name[len(INTAKE_TOPIC_PREFIX):]

    @staticmethod
    def dead_letter_subscription() -> str:
        return subscription_of(INTAKE_DEAD_LETTER_TOPIC)

    @staticmethod
    def run_record(job: str, batch: str) -> str:
        return f"{OUTPUTS}{job}/{batch}/{RUN_RECORD}"

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.project_id}/topics/{topic}"

    def subscription_path(self, subscription: str) -> str:
        return f"projects/{self.project_id}/subscriptions/{subscription}"

    # The task network (Batch: allocationPolicy.network.networkInterfaces[]).
    @property
    def task_network(self) -> str:
        return f"projects/{self.project_id}/global/networks/{TASK_NETWORK}"

    def task_subnetwork(self, region: str) -> str:
        return f"projects/{self.project_id}/regions/{region}/subnetworks/{TASK_NETWORK}"

    # Workflows and schedules.
    @staticmethod
    def job_workflow(job: str) -> str:
        return f"{WORKFLOW_PREFIX}{job}"

    @staticmethod
    def schedule_name(client: str, job: str, index: int) -> str:
        # `--` cannot occur in a client name, so (client, job, index) is read back one way only.
        return f"{WORKFLOW_PREFIX}{client}--{job}-{index}"
