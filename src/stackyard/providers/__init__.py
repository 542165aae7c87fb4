"""The providers package."""
