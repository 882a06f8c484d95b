"""The sendwell example site: a small Django project laid out like a production site."""
