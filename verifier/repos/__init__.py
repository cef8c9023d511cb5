"""Repositories: every SQL statement of the application, one module per noun, the connection first."""
