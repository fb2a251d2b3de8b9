"""Validation of what parties send: field rules, case records, result records."""
