"""The components package."""
