"""Dataset builders; importing this package registers them (see :mod:`spdnas.data.registry`)."""

from spdnas.data.sources import matrices, radar, uea

__all__ = ["matrices", "radar", "uea"]
