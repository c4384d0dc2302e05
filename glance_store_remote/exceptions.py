# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The package's own exception tree.

The driver's internals raise only these; ``store.py`` converts them to
glance_store exceptions in one table at the driver boundary, so the mapping
to HTTP codes that Glance applies is decided in exactly one place.

Messages name the backend and the central image, never a credential or a
URL with user information in it.
"""


class RemoteGlanceError(Exception):
    """Base of every error this package raises."""


class ImportLocked(RemoteGlanceError):
    """Another import holds an edge image's import lock, and it is not
    stale (Glance's API answers 409 then): the edge's answer, whether it was
    asked through its API or inside glance-api.
    """


class InvalidLocation(RemoteGlanceError):
    """A location URI that this backend refuses (before any network call)."""


class LinkRefused(RemoteGlanceError):
    """A location this edge will not accept for the requester: central's
    image is not visible to the requester at central, its data disagrees
    with the edge record, or it is another central image than the edge
    image's other remote-glance locations name. Answered like an unknown
    image, so that a refusal tells nobody that a private image exists;
    ``str()`` says why, for the edge's log.
    """

    public = 'no central image for this location'


class UpstreamError(RemoteGlanceError):
    """Base of the errors that come from talking to central Glance.

    ``str()`` is for the edge's logs and may hold *detail* (the transport's
    own words, which can name central's internal endpoint); ``public`` is
    what a client may be told.
    """

    def __init__(self, backend, message, detail=None):
        self.backend = backend
        self.public = "remote-glance backend '%s': %s" % (backend, message)
        super().__init__(self.public if detail is None
                         else '%s (%s)' % (self.public, detail))


def not_held_here(image_id, edge_image_id=None):
    """What a client reading the data of central image *image_id* is told
    when central cannot be used and the edge does not hold the image: the
    image (the edge's ID the user knows, when it differs from central's)
    and the reason in a user's words, nothing of central's address, no
    quotes (Glance HTML-escapes them in its error bodies). Short: nova keeps
    255 characters of a fault, its own words first.
    """
    return ('image %s is not available at this edge now: central cannot be '
            'reached and the image is not held here'
            % (edge_image_id or image_id))


class UpstreamNotFound(UpstreamError):
    """Central has no image with that ID (or does not show it to us)."""


class UpstreamNotActive(UpstreamNotFound):
    """Central has the image, but not active (queued, saving,
    deactivated): no data to read now, and soon perhaps.
    """


class UpstreamUnavailable(UpstreamError):
    """Central cannot be used now: unreachable, timing out, 5xx, or refusing
    our credentials. Worth retrying later.
    """


class UpstreamBusy(UpstreamUnavailable):
    """The edge reads as many images from central at once as it may
    (remote_glance_max_fills, wan.py): try again later. Its message is
    already the client's.
    """


class UpstreamProtocolError(UpstreamError):
    """Central answered something we must not trust: a malformed or
    oversized record, a wrong status, a length that disagrees, a redirect to
    another origin.
    """


class SizeMismatch(UpstreamProtocolError):
    """Glance asked for bytes past the end of central's image: it computes
    offsets from the edge's record, and that record's size disagrees with
    central's. Raised before any byte.
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


class StreamError(RemoteGlanceError, IOError):
    """A stream already handed to Glance failed in a way nothing else
    names (a bug, or a cache file that shrank under its reader).

    An IOError: Glance's import task retries it, the client sees a short
    body.
    """


class UpstreamStreamError(UpstreamError, IOError):
    """The image stream from central failed after it began.

    It is an IOError so that Glance's background hashing task, which retries
    only on IOError, retries it, and so that the client in flight sees a short
    body rather than a complete-looking image.
    """
