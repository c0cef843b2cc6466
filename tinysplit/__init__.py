"""tinysplit: split-computing models to microcontroller firmware, with a host tail server."""

__version__ = "0.1.0"
