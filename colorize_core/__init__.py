"""colorize_core: Dahl's automatic colorization (2016) as a library. Never imports Prefect."""

__all__ = ["__version__"]
__version__ = "0.1.0"
