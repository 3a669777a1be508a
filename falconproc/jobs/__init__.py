"""Job handlers, their registry, and the supervisor that runs them in child processes."""
