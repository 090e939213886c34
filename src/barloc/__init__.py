"""barloc: calibrated sequence classifiers for fish origin and protein localization."""

__version__ = "0.1.0"
