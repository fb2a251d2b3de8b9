"""The security team's console (docs/security-team.md): its accounts first, its pages next.

The console reads the ledger and the audit log and never a key, a zone or a flow
(DESIGN: "the console never holds a key"); the only thing it writes is its own
accounts' state and the audit entries of what its users do.
"""
