"""Names that say "this holds a secret" (guardrail GPUB_JOB_8): a name part (split on `_ - .` or
a case change) that is a short word on its own (DB_PASS, GH_PAT), or a long one, alone or glued
to a prefix (PRIVATEKEY, APITOKEN, DBPASSWORD). Families, not a list of names: see
tests/test_policies_guardrails.py."""

from __future__ import annotations

import re

SECRET_TOKENS = frozenset(
    ["PASS", "PWD", "PW", "KEY", "KEYS", "PAT", "BEARER", "JWT", "CRED", "CREDS", "OTP", "PSK"]
)
SECRET_SUFFIX_RE = re.compile(
    r"^[A-Z0-9]*(PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|CREDENTIAL|APIKEY|PRIVATEKEY|"
    r"ACCESSKEY|SECRETKEY|SIGNINGKEY|AUTHKEY|PASS|PAT|KEY)S?$"
)
SECRET_PREFIXES = ("API", "PRIVATE", "ACCESS", "SECRET", "SIGNING", "AUTH", "DB", "GH", "GIT")


def looks_secret(name: str) -> bool:
    """API_KEY, dbPassword, DB_PASS, PRIVATEKEY, GH_PAT, BEARER: yes. KEYBOARD_LAYOUT,
    TOKENIZER_NAME, PASSAGE_COUNT, PATH: no."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    for part in (p.upper() for p in re.split(r"[_\-.\s]+", spaced) if p):
        if part in SECRET_TOKENS:
            return True
        m = SECRET_SUFFIX_RE.match(part)
        # PASS, PAT and KEY count glued only to a known prefix (DBPASS, GHPAT), not COMPASS.
        if m and (m[1] not in ("PASS", "PAT", "KEY") or part[: m.start(1)] in SECRET_PREFIXES):
            return True
    return False
