"""Command-line entry points; they own the terminal (progress bars, tables)."""
