"""The composition root beside ``main.py``: wires settings, engine, API and scheduler into a process.

Only ``main.py`` imports it; the pipeline (``aggregator``), ``sources`` and ``api`` never do.
"""
