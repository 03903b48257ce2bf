"""The submit helper: run a declared job on Google Batch or on the embedded local backend.

`bin/submit` runs `python -m submit`. The package is split so the start-up path stays
cheap: `cli` imports only typer/rich and the pure modules (`uris`, `ids`, `manifest`,
`planner`, `synth`); the Google clients (`gcs`, `batch`) are imported inside the commands that
talk to a service, and nothing here ever imports `stacks.provider` (the jsii bindings take
seconds to load).
"""
