"""stackyard: a self-service platform for infrastructure components, environments and workloads."""

__version__ = "0.1.0"
