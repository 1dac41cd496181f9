"""flows: the Prefect flows that call colorize_core, their deployments, and the `colorize` command line."""
