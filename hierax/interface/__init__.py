"""The shell: TOML spec files and the hierax command."""
