"""Leaf modules every package may import: the error root and the locale registry. They import nothing else of the project."""
