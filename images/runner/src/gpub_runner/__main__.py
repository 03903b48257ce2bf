import sys

from gpub_runner.runner import main

if __name__ == "__main__":
    sys.exit(main())
