"""SPDNetNAS: neural architecture search of SPD manifold networks, distributed on Ray."""

__version__ = "0.1.0"
