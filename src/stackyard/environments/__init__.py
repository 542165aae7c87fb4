"""The environments package."""
