"""Service health: is the app up and can it reach its database."""
