"""GPUB_JOB_12: a job's image from the platform's registry is one a build produced.

`images/versions.json` says which version of each image the jobs use, and which digest each
registry holds for it (written by `images/build.sh` after the push). A job passes when each
container image in `<region>-docker.pkg.dev/<project>/batch-images/` is
- `<name>:<version>` with the version recorded for `<name>` (the build tags exactly that), or
- `<name>@sha256:...` with a digest recorded for that registry.
With `GPUB_REQUIRE_IMAGE_DIGESTS=1` (the deploy pipeline) the tag form also needs a recorded
digest for the registry, i.e. a build that really pushed it. Images elsewhere (public images
in imported jobs) are not ours to check here.

Artifact Registry Docker image paths: `LOCATION-docker.pkg.dev/PROJECT/REPOSITORY/IMAGE`
with `:TAG` or `@sha256:DIGEST`
(https://cloud.google.com/artifact-registry/docs/docker/names); without a tag or digest the
registry serves `latest`, so an untagged reference is checked as `:latest`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policies import job_rules
from policies.guardrails import Violation

VERSIONS_FILE = Path(__file__).resolve().parents[1] / "images" / "versions.json"
RULE_ID = "GPUB_JOB_12"
IMAGE_RULES = {RULE_ID: job_rules.TITLES[RULE_ID]}  # declared once, in policies/job_rules.py
REQUIRE_DIGESTS_ENV = "GPUB_REQUIRE_IMAGE_DIGESTS"
REGISTRY_IMAGE_RE = re.compile(
    r"^(?P<registry>[a-z0-9-]+-docker\.pkg\.dev/[a-z][a-z0-9-]{4,28}[a-z0-9]/batch-images)/"
    r"(?P<name>[a-z0-9][a-z0-9._-]*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9._-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$")


@dataclass(frozen=True)
class ImageVersion:
    version: str
    digests: dict[str, str] = field(default_factory=dict)  # registry -> sha256:...


def load_versions(path: Path = VERSIONS_FILE) -> dict[str, ImageVersion]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {name: ImageVersion(str(v["version"]), dict(v.get("digests") or {}))
            for name, v in data["images"].items()}


def _runnables(job: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(JSON path, imageUri) of every container runnable."""
    out = []
    for gi, group in enumerate(job.get("taskGroups") or []):
        runnables = ((group or {}).get("taskSpec") or {}).get("runnables") or []
        for ri, runnable in enumerate(runnables):
            uri = ((runnable or {}).get("container") or {}).get("imageUri")
            if uri:
                out.append((f"taskGroups[{gi}].taskSpec.runnables[{ri}].container.imageUri",
                            str(uri)))
    return out


def check_images(job: Mapping[str, Any], versions: dict[str, ImageVersion] | None = None,
                 *, require_digests: bool | None = None) -> list[Violation]:
    versions = load_versions() if versions is None else versions
    if require_digests is None:
        require_digests = os.environ.get(REQUIRE_DIGESTS_ENV, "") not in ("", "0")
    out: list[Violation] = []
    for path, uri in _runnables(job):
        m = REGISTRY_IMAGE_RE.match(uri)
        if m is None:
            continue
        name, registry = m["name"], m["registry"]
        known = versions.get(name)
        if known is None:
            out.append(Violation(RULE_ID, path, f"{uri}: no build of image {name!r} is "
                                 "recorded in images/versions.json"))
            continue
        recorded = known.digests.get(registry)
        if m["digest"]:
            if m["digest"] != recorded:
                out.append(Violation(RULE_ID, path, f"{uri}: digest not recorded for "
                                     f"{registry}/{name} in images/versions.json (recorded: "
                                     f"{recorded or 'none'})"))
            continue
        tag = m["tag"] or "latest"
        if tag != known.version:
            out.append(Violation(RULE_ID, path, f"{uri}: tag {tag!r} was never built; "
                                 f"images/build.sh builds {name}:{known.version} "
                                 "(images/versions.json)"))
        elif require_digests and recorded is None:
            out.append(Violation(RULE_ID, path, f"{uri}: no pushed digest recorded for "
                                 f"{registry}/{name}:{tag}; run images/build.sh for this "
                                 "environment"))
    return out
