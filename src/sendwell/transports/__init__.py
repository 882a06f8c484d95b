"""Transports: turn one prepared message into one delivery attempt (SES, SMTP)."""
