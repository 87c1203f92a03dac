"""Declarative inputs of babelwire: the outlet catalogue, OPML import/export, disclaimer texts and
the bundled offline demo outlets (``sources.demo``)."""
