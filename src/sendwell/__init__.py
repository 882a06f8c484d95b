"""sendwell: reliable Amazon SES email for Django, with an SMTP fallback."""

__version__ = "0.1.0"
