"""Monthly supervision reports (SPEC §14): figures, rendering, and their delivery."""
