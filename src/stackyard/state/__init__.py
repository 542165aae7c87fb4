"""The state package."""
