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

"""Outage readiness: would a boot at this edge work with central cut?

An edge image needs central once the WAN is cut unless the data of the
central image it links is held, complete and verified, where the read is
served: in this node's cache (``node_report``) or, on a coordinated site,
in the cache of some node (``site_report``: the nodes read from each other
without central). A held image that is not pinned can still be evicted
before the cut: it is reported apart, as unpinned.

Which images matter is read from the edge database (glance_edge.py:
the active edge images with a live location of the backend); what is held
comes from the cache's index (cache.py) or the nodes' cache views (the
peer path). Each edge image is reported on its own (users boot edge IDs),
the check is on the central image it links.
"""

import collections

from glance_store_remote import glance_edge

# The outcome for a set of edge images. unready: edge image IDs whose
# central image is held complete nowhere that counts; unpinned: held but
# pinned nowhere; ready: held and pinned. images: {edge image ID:
# glance_edge.LinkedImage} of every image the lists name.
Report = collections.namedtuple('Report', 'unready unpinned ready images')
# The verdicts, from the best: an edge image gets the worst of its links'.
VERDICTS = ('ready', 'unpinned', 'unready')


def classify(linked, held, pinned):
    """The Report of *linked* (glance_edge.LinkedImage, each edge image
    once per central image it links) given the central image IDs *held*
    complete and those of them *pinned*. An edge image linking two central
    images is ready only when both are. An image with a copy in a store of
    the edge's own (LinkedImage.stored: remote_glance_copy_to_store, or
    ``prefetch --store``) is ready whatever the cache holds: Glance reads
    that location when central is cut.
    """
    state = {}
    for image in linked:
        if image.stored:
            verdict = 'ready'  # a store of the edge's own serves it
        elif image.central_id not in held:
            verdict = 'unready'
        elif image.central_id not in pinned:
            verdict = 'unpinned'
        else:
            verdict = 'ready'
        state[image.image_id] = max(verdict,
                                    state.get(image.image_id, 'ready'),
                                    key=VERDICTS.index)
    return Report(*(sorted(i for i, s in state.items() if s == verdict)
                    for verdict in ('unready', 'unpinned', 'ready')),
                  images={image.image_id: image for image in linked})


def restricted(report, image_ids):
    """*report* narrowed to the edge images *image_ids* (e.g. the images
    of the edge's servers).
    """
    keep = set(image_ids)
    return Report(*([i for i in ids if i in keep]
                    for ids in report[:3]),
                  images={i: image for i, image in report.images.items()
                          if i in keep})


def linked_images(conf, backend):
    """The edge images linked to *backend* (glance_edge.LinkedImage), read
    from the edge database that *conf* (glance-api.conf) names.

    :raises glance_edge.DatabaseUnreadable
    """
    engine = glance_edge.database_engine(conf)
    try:
        return glance_edge.linked_images(backend, engine)
    finally:
        engine.dispose()


def node_holdings(cache):
    """(central IDs held complete, those of them pinned) in *cache* (None:
    a backend without a cache holds nothing). Complete entries are
    verified ones; each is checked to be on disk (a stat).
    """
    held = [entry for entry in (cache.entries() if cache else ())
            if entry.state == 'complete' and
            cache.holds_complete(entry.image_id)]
    return ({entry.image_id for entry in held},
            {entry.image_id for entry in held if entry.pinned})


def site_holdings(views):
    """(central IDs held complete by some node, those pinned on a node
    holding them) from the nodes' cache views (peers.server.cache_view;
    None for a node that did not answer, which holds nothing here).
    """
    held = [entry for view in views.values() if view
            for entry in view.get('entries', ())
            if entry.get('state') == 'complete']
    return ({entry['image_id'] for entry in held},
            {entry['image_id'] for entry in held if entry.get('pinned')})


def node_report(conf, backend, cache):
    """The Report of this node: the active edge images linked to *backend*
    whose central image *cache* does not hold complete (unready), holds
    without a pin (unpinned), holds pinned (ready).

    :param conf: a ConfigOpts that read glance-api.conf (its ``[database]
        connection``)
    :param cache: the backend's cache.Cache, or None when it has none
    :raises glance_edge.DatabaseUnreadable: the edge database cannot be
        read (a RemoteGlanceError)
    """
    return classify(linked_images(conf, backend), *node_holdings(cache))


def site_report(conf, backend, views):
    """The Report of a site: images that no node holds complete (unready),
    held but pinned on no node holding them (unpinned), and the rest.

    :param views: {node: its cache view, or None} (see site_holdings); a
        node that did not answer makes the answer incomplete, which the
        caller says
    :raises glance_edge.DatabaseUnreadable
    """
    return classify(linked_images(conf, backend), *site_holdings(views))
