"""mixture package."""
