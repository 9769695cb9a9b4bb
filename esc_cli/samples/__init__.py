"""Data files shipped with the package: the sample photo (see README.md)."""
