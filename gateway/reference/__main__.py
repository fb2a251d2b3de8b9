"""``python -m gateway.reference PAGE`` prints a page: config, cli, agency-config or
agency-cli (``make docs`` writes them)."""

import sys

from gateway.reference import main

sys.exit(main())
