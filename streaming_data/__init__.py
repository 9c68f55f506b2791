"""streaming_data package."""
