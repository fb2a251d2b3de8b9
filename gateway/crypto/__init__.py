"""OpenPGP for the gateway: key files (``keys``) and the streaming engine (``engine``)."""
