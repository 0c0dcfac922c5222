"""``python -m boneqct.cli``."""

import sys

from boneqct.cli import main

sys.exit(main())
