"""Access evidence from OpenSSH (SPEC §14): who fetched which file, from where, how much."""
