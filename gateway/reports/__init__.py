"""Monthly supervision reports (docs/security-team.md): figures, rendering, and their delivery."""
