"""First-deploy rules: CKV_GPUB_DEP_1..4 (sources in docs/policies.md).

The dependency graph is built once per stack file (`policies.fresh_project`, the same walker
the fresh-project test uses); each rule judges the resource checkov asks about. A `for_each`
resource is one node of Terraform's graph, so it is judged once, as a whole. A client shard's
graph holds its platform stack as applied before it (`StackFacts.applied_before`); the
scheduler quota is counted over the environment's whole group.
"""

from __future__ import annotations

from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult

from policies.checkbase import GpubCheck, declared_quotas
from policies.fresh_project import Finding, findings, provider_findings
from tfjson import StackFacts, instances, value

_FINDINGS: dict[tuple[int, ...], tuple[tuple[Any, ...], dict[str, list[Finding]]]] = {}


def _findings(facts: StackFacts) -> dict[str, list[Finding]]:
    docs = (facts.document, *facts.applied_before)
    key = tuple(id(d) for d in docs)
    hit = _FINDINGS.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], docs, strict=True)):
        return hit[1]
    found = findings(facts.document, facts.applied_before)
    _FINDINGS[key] = (docs, found)
    return found


class _GraphCheck(GpubCheck):
    """A rule over the stack's dependency graph, judged per resource address."""

    kind = ""  # the Finding kind this rule reports

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        _, rtype, name = self.entity_path.rsplit(":", 2)
        got = [f for f in _findings(self.facts).get(f"{rtype}.{name}", [])
               if f.kind == self.kind]
        for finding in got:
            self.fail(finding.message)
        return CheckResult.FAILED if got else CheckResult.PASSED

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:  # pragma: no cover - unused
        return CheckResult.UNKNOWN


class WaitsForItsApis(_GraphCheck):
    def __init__(self) -> None:
        super().__init__(name="A resource depends on the enablement of each API it needs, "
                         "behind a time_sleep", id="CKV_GPUB_DEP_1",
                         categories=[CheckCategories.GENERAL_SECURITY],
                         supported_resources=["google_*"])

    kind = "api"


class WaitsForItsGrants(_GraphCheck):
    def __init__(self) -> None:
        super().__init__(name="CMEK resources, triggers, notifications and grants to service "
                         "agents wait behind a time_sleep after their grant or agent",
                         id="CKV_GPUB_DEP_2", categories=[CheckCategories.IAM],
                         supported_resources=["google_*"])

    kind = "grant"


class ProvidersPinned(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="Every provider is pinned to an exact version",
                         id="CKV_GPUB_DEP_3", categories=[CheckCategories.GENERAL_SECURITY],
                         supported_resources=["google_project_service"])

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        # A file-wide rule: judged once, on the file's first API enablement.
        _, _, name = self.entity_path.rsplit(":", 2)
        doc = self.facts.document
        services = (doc.get("resource") or {}).get("google_project_service", {})
        if services and name != next(iter(services)):
            return CheckResult.UNKNOWN
        return self.scan_entry({})

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        got = provider_findings(self.facts.document)
        for message in got:
            self.fail(message)
        return CheckResult.FAILED if got else CheckResult.PASSED


SCHEDULER_DEFAULT_QUOTA = 1000  # jobs per region: cloud.google.com/scheduler/quotas


class SchedulerJobsPerRegion(GpubCheck):
    def __init__(self) -> None:
        super().__init__(name="Cloud Scheduler jobs within the region's quota (1,000 by "
                         "default)", id="CKV_GPUB_DEP_4",
                         categories=[CheckCategories.GENERAL_SECURITY],
                         supported_resources=["google_cloud_scheduler_job"])

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        region = str(value(conf, "region", default=""))
        facts = self.facts
        quota = int(declared_quotas(facts).get("scheduler_jobs_per_region",
                                               SCHEDULER_DEFAULT_QUOTA))
        # A project's quota: every file of the environment (platform and client shards).
        n = sum(_scheduler_counts(doc).get(region, 0) for doc in facts.group_documents)
        if n > quota:
            return self.fail(f"{n} Cloud Scheduler jobs in {region}; the quota is {quota} "
                             "(1,000 by default, 5,000 at most): ask for more and set "
                             "settings.scheduler_jobs_quota, or schedule fewer")
        return CheckResult.PASSED


_SCHED: dict[int, tuple[Any, dict[str, int]]] = {}


def _scheduler_counts(doc: Any) -> dict[str, int]:
    hit = _SCHED.get(id(doc))
    if hit is not None and hit[0] is doc:
        return hit[1]
    counts: dict[str, int] = {}
    for name, conf in ((doc.get("resource") or {}).get("google_cloud_scheduler_job")
                       or {}).items():
        for _, body in instances(name, conf):
            region = str(body.get("region", ""))
            counts[region] = counts.get(region, 0) + 1
    _SCHED[id(doc)] = (doc, counts)
    return counts


check_dep_1 = WaitsForItsApis()
check_dep_2 = WaitsForItsGrants()
check_dep_3 = ProvidersPinned()
check_dep_4 = SchedulerJobsPerRegion()
