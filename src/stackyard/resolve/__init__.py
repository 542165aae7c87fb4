"""The resolve package."""
