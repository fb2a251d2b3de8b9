"""``python -m gateway`` is the same as the ``gateway`` command."""

from gateway.launch import main

main()
