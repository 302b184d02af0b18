"""Where the experiments find the shared MNIST files.

``$ADVJAX_DATA`` if set, else ``shared/data`` beside the checkout (the
``../shared`` folder of the development and CI machines).
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA = Path(
    os.environ.get("ADVJAX_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
