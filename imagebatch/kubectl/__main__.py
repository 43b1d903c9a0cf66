"""`python -m imagebatch.kubectl` is `kubectl imagebatch`."""

from __future__ import annotations

import sys

from imagebatch.kubectl.cli import main

if __name__ == "__main__":
    sys.exit(main())
