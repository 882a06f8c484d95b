"""Helpers for testing code that sends email with sendwell (they need the ``test`` extra)."""
