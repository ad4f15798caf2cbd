"""gun-hub: integration hub for a customs single window (Guichet Unique National)."""

__version__ = "0.1.0"
