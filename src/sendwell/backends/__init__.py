"""Django email backends."""
