"""The jobs this platform declares, one module per job (collected by `jobs.registry`)."""
