"""Settings modules: ``base`` (shared), ``production`` (everything from the environment) and
``demo`` (production's email path with throw-away local values for everything else)."""
