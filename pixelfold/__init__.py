"""pixelfold: generative building blocks for progressive pixel regression (PixelFolder, CIPS)."""

__version__ = "0.1.0.dev0"

__all__ = ["__version__"]
