"""A small mailing list, to show an application acting on sendwell's feedback loop."""
