"""`python -m m2l ...` (and `torchrun -m m2l ...`): the `m2l` command line."""

import sys

from m2l.cli.app import main

if __name__ == "__main__":
    sys.exit(main())
