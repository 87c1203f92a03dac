"""babelwire's read API: localized feeds, stories and delta sync for the mobile app (FastAPI)."""
