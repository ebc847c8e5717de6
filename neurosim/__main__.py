"""``python -m neurosim ...``: the ``neurosim`` command (:func:`neurosim.cli.main`)."""

import sys

from neurosim.cli import main

sys.exit(main())
