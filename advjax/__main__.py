"""``python -m advjax`` runs the ``advjax`` command."""

import sys

from advjax.cli import main

sys.exit(main())
