"""The eight build stages, in order. Each is its own module with its own config section."""
