"""What a user sets: the build settings, from flags and from hvboot.toml."""
