"""Policy checks: the checkov rule pack, the suppression registry and the job guardrails.

`policies.guardrails` is imported by the submit helper on every submit: keep this package's
`__init__` empty so that import stays cheap (checkov is only imported by `policies.check_cli`).
"""
