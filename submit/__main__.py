"""`python -m submit ...` (what `bin/submit` runs)."""

from submit.cli import main

main()
