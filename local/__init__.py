"""Embedded local backend: fake-gcs-server plus a Google Batch API (gRPC) server that runs
jobs as local processes. Entry points: `local.backend.LocalBackend`, `local.client.batch_client`,
`python -m local {start,stop,status}`. Kept import-light: nothing heavy is imported here."""
