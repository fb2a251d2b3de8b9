"""``python -m gateway.reference config|cli`` prints a page (``make docs`` writes them)."""

import sys

from gateway.reference import main

sys.exit(main())
