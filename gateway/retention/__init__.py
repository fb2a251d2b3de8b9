"""Retention: contract states, purge deadlines, purges and deletion certificates."""
