"""The package's own exception tree.

The driver's internals raise only these; ``store.py`` converts them to
glance_store exceptions in one table at the driver boundary, so the mapping
to HTTP codes that Glance applies is decided in exactly one place.

Messages name the backend and the central image, never a credential or a
URL with user information in it.
"""


class RemoteGlanceError(Exception):
    """Base of every error this package raises."""


class InvalidLocation(RemoteGlanceError):
    """A location URI that this backend refuses (before any network call)."""


class UpstreamError(RemoteGlanceError):
    """Base of the errors that come from talking to central Glance."""

    def __init__(self, backend, message):
        self.backend = backend
        super().__init__("remote-glance backend '%s': %s" % (backend, message))


class UpstreamNotFound(UpstreamError):
    """Central has no image with that ID (or does not show it to us)."""


class UpstreamUnavailable(UpstreamError):
    """Central cannot be used now: unreachable, timing out, 5xx, or refusing
    our credentials. Worth retrying later.
    """


class UpstreamProtocolError(UpstreamError):
    """Central answered something we must not trust: a malformed or
    oversized record, a wrong status, a length that disagrees, a redirect to
    another origin.
    """


class CacheError(RemoteGlanceError):
    """The local cache cannot be used (disk full, unwritable directory,
    damaged index).

    Never fails a read that central can serve: the read goes on uncached.
    """


class CacheIntegrityError(CacheError, IOError):
    """The bytes fetched for an image did not match central's size and hash.

    Nothing was committed. The client in flight gets a short body (this is
    an IOError), never a complete-looking wrong image.
    """


class UpstreamStreamError(UpstreamError, IOError):
    """The image stream from central failed after it began.

    It is an IOError so that Glance's background hashing task, which retries
    only on IOError, retries it, and so that the client in flight sees a short
    body rather than a complete-looking image.
    """
