"""amberwatch: find illegal surface mining on satellite and aerial imagery, map it, measure it, tell it."""

__version__ = "0.1.0"
