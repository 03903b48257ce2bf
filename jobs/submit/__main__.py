"""`python -m jobs.submit ...` (what `bin/submit` runs)."""

from jobs.submit.cli import main

main()
