"""flows: the `colorize` command line and (later) the Prefect flows that call colorize_core."""
