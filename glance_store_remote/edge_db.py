"""Reads of the edge Glance's own database, from inside glance-api.

The driver runs in glance-api's process, where Glance's database engine is
configured; these helpers use it. Outside glance-api (the CLI, unit tests)
they answer None and callers keep to the safe side.
"""

import logging

LOG = logging.getLogger(__name__)

_COUNT_LIVE_LOCATIONS = (
    "SELECT COUNT(*) FROM image_locations WHERE value = :uri "
    "AND deleted = 0 AND status = 'active'")


def _engine():
    from glance.db.sqlalchemy import api as db_api
    return db_api.get_engine()


def count_live_locations(uri):
    """How many live edge image locations use *uri* (the image being
    deleted included: Glance marks its location deleted afterwards).

    :returns: the count, or None when the edge database cannot be read
    """
    try:
        import sqlalchemy
        with _engine().connect() as connection:
            return connection.execute(sqlalchemy.text(_COUNT_LIVE_LOCATIONS),
                                      {'uri': uri}).scalar()
    except Exception as e:
        LOG.debug('edge database not readable here: %s', e)
        return None
