"""Health, memory readings and metrics."""
