"""Repositories: one module per noun, each function taking the connection first, owning every SQL statement."""
