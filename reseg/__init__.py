"""ReSeg: recurrent semantic segmentation of street scenes."""

__version__ = "0.1.0"
