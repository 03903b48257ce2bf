"""Test helpers shared by the test modules (test modules import helpers only from here, never
from each other): Terraform JSON reading (`tf`), the local cloud for end-to-end stories
(`e2e_cloud`), fake-gcs-server (`gcs_server`), bin/submit on the local backend
(`local_submit`), the task runtime's in-memory store (`runner_store`) and the workflow source
builder and its emulator (`workflow_source`)."""
