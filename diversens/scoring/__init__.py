"""Scoring: diversity measures (lexical, semantic), quality and compliance, validity."""
