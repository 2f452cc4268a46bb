"""`python -m flows.cli`: the `voicecycle` command."""

import sys

from flows.cli import main

sys.exit(main())
