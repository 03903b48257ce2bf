"""`bin/bootstrap ENV`: what an administrator makes once per environment, before the first
deploy (the stacks cannot make their own state, deployer or credentials).

    bin/bootstrap prod --repo example-org/gpu-batch-platform --dry-run   # print the script
    bin/bootstrap prod --repo example-org/gpu-batch-platform             # run it

Per environment (one credential set per environment project):
1. the APIs the pipeline needs before Terraform runs (stacks/apis.py BOOTSTRAP_APIS), in the
   platform project and in the client identities' project (created with `--parent`);
2. the state bucket (versioned, uniform access, public access prevention; the gcs backend
   needs it before `init`: developer.hashicorp.com/terraform/language/backend/gcs);
3. `deployer@` and `planner@`, with their project roles, their grants on the state bucket
   (only under the environment's prefix), on the billing account, and in the clients project;
4. a Workload Identity pool and GitHub provider in the environment project, and the bindings
   for the subjects GitHub really sends: a job with `environment: NAME` gets
   `repo:ORG/REPO:environment:NAME`, a pull request `repo:ORG/REPO:pull_request`
   (docs.github.com/en/actions/security-for-github-actions/security-hardening-your-deployments/
   about-security-hardening-with-openid-connect#example-subject-claims).
Every step is idempotent: "already exists" is not an error. No Google call in `--dry-run`.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass

import typer

from stacks.apis import BOOTSTRAP_APIS, CLIENT_PROJECT_APIS
from stacks.layout import DEPLOYER_SA_ID, PLANNER_SA_ID
from stacks.settings import EnvironmentSettings
from stacks.shards import group_pattern

NUMBER = "${PROJECT_NUMBER}"  # the environment project's number, read at run time
REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
POOL, PROVIDER = "github", "github"
ISSUER = "https://token.actions.githubusercontent.com"
# One predefined admin role per service the stack manages; never owner/editor.
DEPLOYER_ROLES = (
    "serviceusage.serviceUsageAdmin", "storage.admin", "iam.serviceAccountAdmin",
    "resourcemanager.projectIamAdmin", "artifactregistry.admin", "workflows.admin",
    "eventarc.admin", "cloudscheduler.admin", "pubsub.admin", "secretmanager.admin",
    "cloudquotas.admin", "compute.networkAdmin", "compute.securityAdmin",
    "logging.configWriter", "monitoring.editor",
)
PLANNER_ROLES = (
    "serviceusage.serviceUsageViewer", "serviceusage.serviceUsageConsumer",
    "storage.bucketViewer", "iam.serviceAccountViewer", "iam.securityReviewer",
    "artifactregistry.reader", "workflows.viewer", "eventarc.viewer", "cloudscheduler.viewer",
    "pubsub.viewer", "secretmanager.viewer", "cloudquotas.viewer", "compute.networkViewer",
    "logging.viewer", "monitoring.viewer",
)
# In the client identities' project: accounts only (and the APIs they need).
CLIENTS_DEPLOYER_ROLES = ("iam.serviceAccountAdmin", "serviceusage.serviceUsageAdmin")
CLIENTS_PLANNER_ROLES = ("iam.serviceAccountViewer", "serviceusage.serviceUsageViewer")


@dataclass(frozen=True)
class Step:
    why: str
    argv: tuple[str, ...]


def deployer_roles(settings: EnvironmentSettings) -> list[str]:
    return [f"roles/{r}" for r in (*DEPLOYER_ROLES, *(("cloudkms.admin",) if settings.cmek
                                                    else ()))]


def planner_roles(settings: EnvironmentSettings) -> list[str]:
    return [f"roles/{r}" for r in (*PLANNER_ROLES, *(("cloudkms.viewer",) if settings.cmek
                                                   else ()))]


def state_condition(bucket: str, prefix: str) -> str:
    """CEL: objects under `prefix/` of the state bucket, and lists of that prefix only (a
    list is authorized on the bucket with `objectListPrefix`: cloud.google.com/storage/docs/
    access-control/iam#conditions)."""
    where = prefix.strip("/") + "/"
    return (f'(resource.type == "storage.googleapis.com/Object" && resource.name.startsWith('
            f'"projects/_/buckets/{bucket}/objects/{where}")) || (resource.type == '
            f'"storage.googleapis.com/Bucket" && resource.name == "projects/_/buckets/{bucket}"'
            f' && api.getAttribute("storage.googleapis.com/objectListPrefix", "").startsWith('
            f'"{where}"))')


def github_environment(settings: EnvironmentSettings) -> str:
    """The GitHub environment whose jobs deploy `settings` (.github/workflows/deploy.yml)."""
    return settings.name


def subjects(repo: str, settings: EnvironmentSettings) -> dict[str, str]:
    return {DEPLOYER_SA_ID: f"repo:{repo}:environment:{github_environment(settings)}",
            PLANNER_SA_ID: f"repo:{repo}:pull_request"}


def principal(subject: str) -> str:
    return (f"principal://iam.googleapis.com/projects/{NUMBER}/locations/global/"
            f"workloadIdentityPools/{POOL}/subject/{subject}")


def _member(email: str) -> str:
    return f"serviceAccount:{email}"


def _apis(project: str, apis: tuple[str, ...]) -> Step:
    return Step(f"APIs the pipeline needs before Terraform in {project}",
                ("gcloud", "services", "enable", *apis, "--project", project))


def _project_roles(project: str, email: str, roles: list[str]) -> list[Step]:
    return [Step(f"{email.split('@')[0]}: {role} on {project}",
                 ("gcloud", "projects", "add-iam-policy-binding", project, "--member",
                  _member(email), "--role", role, "--condition=None", "--quiet"))
            for role in roles]


def _clients_project(settings: EnvironmentSettings, parent: str | None) -> list[Step]:
    project = settings.clients_project
    steps = []
    if parent is not None:
        kind, _, ident = parent.partition("/")
        flag = "--folder" if kind == "folders" else "--organization"
        steps.append(Step("the client identities' project", (
            "gcloud", "projects", "create", project, f"{flag}={ident}")))
        if settings.billing_account:
            steps.append(Step("its billing (API usage)", (
                "gcloud", "billing", "projects", "link", project,
                "--billing-account", settings.billing_account)))
    apis = ("serviceusage.googleapis.com", "cloudresourcemanager.googleapis.com",
            *CLIENT_PROJECT_APIS)
    steps.append(_apis(project, apis))
    return steps


def _state(settings: EnvironmentSettings, state_project: str) -> list[Step]:
    bucket = settings.state_bucket
    steps = [
        Step("the Terraform state bucket", (
            "gcloud", "storage", "buckets", "create", f"gs://{bucket}", "--project",
            state_project, "--location", settings.region, "--uniform-bucket-level-access",
            "--public-access-prevention")),
        Step("state versions (recover a bad apply)", (
            "gcloud", "storage", "buckets", "update", f"gs://{bucket}", "--versioning")),
    ]
    expression = state_condition(bucket, settings.state_prefix)
    for sa in (DEPLOYER_SA_ID, PLANNER_SA_ID):  # a plan writes the lock object too
        email = _email(settings, sa)
        condition = (f"^;^title={sa}-{settings.name}-state;description=state and lock under "
                     f"{settings.state_prefix}/;expression={expression}")
        steps.append(Step(f"{sa}: state and lock under {settings.state_prefix}/ only", (
            "gcloud", "storage", "buckets", "add-iam-policy-binding", f"gs://{bucket}",
            "--member", _member(email), "--role", "roles/storage.objectUser",
            f"--condition={condition}")))
    return steps


def _email(settings: EnvironmentSettings, account_id: str) -> str:
    return {DEPLOYER_SA_ID: settings.layout.deployer_sa_email,
            PLANNER_SA_ID: settings.layout.planner_sa_email}[account_id]


def _identities(settings: EnvironmentSettings) -> list[Step]:
    project = settings.project_id
    steps = [Step(f"the pipeline identity {sa}@", (
        "gcloud", "iam", "service-accounts", "create", sa, "--project", project,
        "--display-name", f"GPU batch platform {sa} ({settings.name})"))
        for sa in (DEPLOYER_SA_ID, PLANNER_SA_ID)]
    deployer, planner = _email(settings, DEPLOYER_SA_ID), _email(settings, PLANNER_SA_ID)
    steps += _project_roles(project, deployer, deployer_roles(settings))
    steps += _project_roles(project, planner, planner_roles(settings))
    clients = settings.clients_project
    steps += _project_roles(clients, deployer, [f"roles/{r}" for r in CLIENTS_DEPLOYER_ROLES])
    steps += _project_roles(clients, planner, [f"roles/{r}" for r in CLIENTS_PLANNER_ROLES])
    if settings.billing_account:
        for email, role in ((deployer, "roles/billing.costsManager"),
                            (planner, "roles/billing.viewer")):
            steps.append(Step(f"{email.split('@')[0]}: {role} on the billing account", (
                "gcloud", "billing", "accounts", "add-iam-policy-binding",
                settings.billing_account, "--member", _member(email), "--role", role)))
    return steps


def _federation(settings: EnvironmentSettings, repo: str) -> list[Step]:
    project = settings.project_id
    mapping = ("google.subject=assertion.sub,attribute.repository=assertion.repository,"
               "attribute.environment=assertion.environment")
    steps = [
        Step("the Workload Identity pool", (
            "gcloud", "iam", "workload-identity-pools", "create", POOL, "--project", project,
            "--location", "global")),
        Step("GitHub's OIDC provider, this repository only", (
            "gcloud", "iam", "workload-identity-pools", "providers", "create-oidc", PROVIDER,
            "--project", project, "--location", "global", "--workload-identity-pool", POOL,
            "--issuer-uri", ISSUER, "--attribute-mapping", mapping,
            "--attribute-condition", f"assertion.repository == '{repo}'")),
    ]
    for sa, subject in subjects(repo, settings).items():
        steps.append(Step(f"{sa}@ for {subject}", (
            "gcloud", "iam", "service-accounts", "add-iam-policy-binding",
            _email(settings, sa), "--project", project, "--role",
            "roles/iam.workloadIdentityUser", "--member", principal(subject))))
    return steps


def bootstrap_steps(settings: EnvironmentSettings, repo: str, state_project: str | None = None,
                    parent: str | None = None) -> list[Step]:
    return [
        _apis(settings.project_id, BOOTSTRAP_APIS),
        *_clients_project(settings, parent),
        *_state(settings, state_project or settings.project_id),
        *_identities(settings),
        *_federation(settings, repo),
    ]


def first_deploy_steps(settings: EnvironmentSettings) -> list[Step]:
    """The first deploy, in the order .github/workflows/deploy.yml runs it: no image digest
    can exist before the deploy creates the registry, so the digest check comes last."""
    stack, region, project = settings.stack_name, settings.region, settings.project_id
    return [
        Step("policy checks on what is deployed", ("bin/check",)),
        Step("the committed provider lock into each stack", ("bin/lock-providers", "--install")),
        # The platform stack, then its client shards (if any), each after the platform (a
        # stack dependency): one pattern that always matches the platform.
        Step("the stacks: APIs, registry, identities, network, then the clients' shards", (
            "bin/cdktn", "deploy", group_pattern(stack), "--auto-approve")),
        Step("docker credentials for the registry", (
            "gcloud", "auth", "configure-docker", f"{region}-docker.pkg.dev", "--quiet")),
        Step("the job images, digests recorded in images/versions.json", (
            "images/build.sh", "--project", project, "--region", region, "--local")),
        Step("every image tag the jobs use was pushed", (
            "env", "GPUB_REQUIRE_IMAGE_DIGESTS=1", "bin/check")),
    ]


def _number_step(settings: EnvironmentSettings) -> tuple[str, ...]:
    return ("gcloud", "projects", "describe", settings.project_id,
            "--format=value(projectNumber)")


def script(settings: EnvironmentSettings, steps: list[Step]) -> str:
    """The steps as a bash script (what `--dry-run` prints)."""
    lines = ["#!/usr/bin/env bash", "set -euo pipefail",
             f"PROJECT_NUMBER=$({shlex.join(_number_step(settings))})"]
    for step in steps:
        command = shlex.join(step.argv).replace(shlex.quote(NUMBER), f'"{NUMBER}"')
        # `${PROJECT_NUMBER}` inside a member string: double quotes expand it.
        command = re.sub(r"'([^']*\$\{PROJECT_NUMBER\}[^']*)'", r'"\1"', command)
        lines += [f"# {step.why}", command]
    return "\n".join(lines) + "\n"


def run_plain(steps: list[Step]) -> int:
    for step in steps:
        print(f"first deploy: {step.why}", file=sys.stderr)
        if subprocess.run(step.argv, check=False).returncode != 0:
            print(f"first deploy: {shlex.join(step.argv)} failed", file=sys.stderr)
            return 1
    return 0


def run(settings: EnvironmentSettings, steps: list[Step]) -> int:
    number = subprocess.run(_number_step(settings), capture_output=True, text=True,
                            check=False)
    if number.returncode != 0:
        print(f"bootstrap: cannot read {settings.project_id}: {number.stderr.strip()}",
              file=sys.stderr)
        return 2
    for step in steps:
        argv = [a.replace(NUMBER, number.stdout.strip()) for a in step.argv]
        print(f"bootstrap: {step.why}", file=sys.stderr)
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0 and "already exists" not in done.stderr.lower():
            print(f"bootstrap: {shlex.join(argv)} failed: {done.stderr.strip()}",
                  file=sys.stderr)
            return 1
    return 0


app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0] if __doc__ else None)


@app.command()
def main(
    env: str = typer.Argument(..., help="environment name (stacks/environments.py)"),
    repo: str = typer.Option(..., help="ORG/REPO of the pipeline (GitHub)"),
    state_project: str | None = typer.Option(None, help="project of the state bucket"),
    parent: str | None = typer.Option(
        None, help="folders/N or organizations/N: create the clients project there"),
    first_deploy: bool = typer.Option(
        False, "--first-deploy", help="the first deploy, in the pipeline's order"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the script, call nothing"),
) -> None:
    from stacks.environments import load_environments

    envs = {e.name: e for e in load_environments()}
    if env not in envs:
        typer.echo(f"bootstrap: env {env!r} is not an environment (known: "
                   f"{', '.join(sorted(envs))})", err=True)
        raise typer.Exit(2)
    if not REPO_RE.match(repo):
        typer.echo(f"bootstrap: --repo {repo!r} must be ORG/REPO", err=True)
        raise typer.Exit(2)
    if parent is not None and not re.match(r"^(folders|organizations)/[0-9]+$", parent):
        typer.echo(f"bootstrap: --parent {parent!r} must be folders/N or organizations/N",
                   err=True)
        raise typer.Exit(2)
    settings = envs[env]
    if first_deploy:
        steps = first_deploy_steps(settings)
        if dry_run:
            typer.echo("\n".join(f"# {s.why}\n{shlex.join(s.argv)}" for s in steps))
            return
        raise typer.Exit(run_plain(steps))
    steps = bootstrap_steps(settings, repo, state_project, parent)
    if dry_run:
        typer.echo(script(settings, steps), nl=False)
        return
    raise typer.Exit(run(settings, steps))


if __name__ == "__main__":
    app()
