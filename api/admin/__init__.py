"""The admin API under ``/v1/admin`` (Bearer API keys with roles; every write audited).

``auth`` checks keys; ``routes`` maps HTTP onto ``aggregator.editorial``'s plain functions, which
do the work inside one transaction each.
"""
