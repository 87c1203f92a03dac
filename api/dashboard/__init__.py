"""The editors' dashboard (``/dashboard``): Jinja2 pages over ``aggregator.editorial``."""
