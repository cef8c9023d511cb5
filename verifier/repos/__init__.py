"""Repositories: one module per noun, each owning every SQL statement on its tables (connection first)."""
