"""Access evidence from OpenSSH (docs/security-team.md): who fetched which file, from where, how much."""
