"""Base class of the CKV_GPUB rules: a checkov resource check that knows its stack's facts."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from checkov.common.models.enums import CheckCategories, CheckResult
from checkov.terraform.checks.resource.base_resource_check import BaseResourceCheck

from policies.tfjson import StackFacts, facts_for_scanned_file, for_each_entries

# Every IAM grant resource of the google provider, present and future.
IAM_GRANTS = ("google_*_iam_member", "google_*_iam_binding", "google_*_iam_policy")
GUIDELINE = "docs/policies.md"


class GpubCheck(BaseResourceCheck):
    """A rule of our pack; `fail()` records why, so the console and SARIF say what to fix."""

    def __init__(
        self,
        name: str,
        id: str,  # checkov's keyword
        categories: Iterable[CheckCategories],
        supported_resources: Iterable[str],
    ) -> None:
        super().__init__(
            name=name,
            id=id,
            categories=categories,
            supported_resources=supported_resources,
            guideline=f"{GUIDELINE}#{id.lower().replace('_', '-')}",
        )

    @property
    def facts(self) -> StackFacts:
        # checkov sets entity_path = "<scanned_file>:<type>:<name>" before scanning.
        scanned_file = self.entity_path.rsplit(":", 2)[0]
        return facts_for_scanned_file(scanned_file)

    def fail(self, message: str) -> CheckResult:
        self.details.append(message)
        return CheckResult.FAILED

    def scan_resource_conf(self, conf: dict[str, list[Any]]) -> CheckResult:
        """The rule on the resource, or on every entry of its `for_each` map.

        A `for_each` resource fails when any entry fails (the details name the key), passes
        when some entry passes and none fails, and fails when its map cannot be read.
        """
        entries = for_each_entries(conf)
        if entries is None:
            return self.scan_entry(conf)
        if not entries:
            return self.fail("for_each is not a literal map; its entries cannot be checked")
        results = []
        for key, entry in entries:
            seen = len(self.details)
            result = self.scan_entry(entry)
            self.details[seen:] = [f"[{key}] {d}" for d in self.details[seen:]]
            results.append(result)
        if CheckResult.FAILED in results:
            return CheckResult.FAILED
        if CheckResult.PASSED in results:
            return CheckResult.PASSED
        return CheckResult.UNKNOWN

    def scan_entry(self, conf: dict[str, Any]) -> CheckResult:
        """The rule on one resource (or one `for_each` instance of it)."""
        raise NotImplementedError
