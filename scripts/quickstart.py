#!/usr/bin/env python3
"""Run the one-machine quickstart cluster from a source checkout, without installing:
``python3 scripts/quickstart.py [--data-dir DIR] [--exit-after-blocks N] [--timeout S]`` is
``autonomys-farmer quickstart ...`` (see services/quickstart.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["quickstart", *sys.argv[1:]]))
