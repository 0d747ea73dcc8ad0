"""``python -m services ...`` is ``autonomys-farmer ...`` (works before console scripts are on PATH)."""

import sys

from services.cli import main

if __name__ == "__main__":
    sys.exit(main())
