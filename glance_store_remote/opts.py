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

"""Configuration options of a remote-glance backend group.

A backend group (``[central]`` for
``enabled_backends = central:remote-glance``) holds two kinds of options:

* keystoneauth1's standard session, auth and adapter options (``auth_type``,
  ``auth_url``, ``region_name``, ``endpoint_override``, ``cafile``,
  ``timeout``...), registered by keystoneauth1 itself so that they read
  exactly as in every other OpenStack service;
* this driver's own options, all named ``remote_glance_*``, which glance_store
  also registers in ``[backend_defaults]``: the prefix keeps them from
  clashing with another driver's options there.

``list_opts`` feeds ``oslo-config-generator`` (entry point
``oslo.config.opts: glance_store_remote``).
"""

import copy

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg
from oslo_utils import units

# The group name used for the generated sample; an operator names the group
# after the backend in ``enabled_backends``.
SAMPLE_BACKEND = 'central'

# Defaults we give keystoneauth1's options in a remote-glance group. An edge
# usually reaches central over a WAN, through central's public endpoint, and
# must not wait forever on a link that died.
KEYSTONEAUTH_DEFAULTS = {
    'service_type': 'image',
    'valid_interfaces': ['public'],
    'timeout': 30,
}

store_opts = [
    cfg.IntOpt(
        'remote_glance_chunk_size',
        default=4 * units.Mi,
        min=64 * units.Ki,
        max=64 * units.Mi,
        help="""
Read size for image data from central Glance, in bytes.

Each chunk read from central is handed to the edge's WSGI server as one
piece. Larger chunks cost fewer system calls and Python iterations per
gigabyte; memory used per download stays about one chunk.

Possible values:
    * An integer from 65536 (64 KiB) to 67108864 (64 MiB); default 4194304
      (4 MiB).

Related options:
    * timeout
"""),
    cfg.IntOpt(
        'remote_glance_record_ttl',
        default=60,
        min=0,
        max=3600,
        help="""
How long a central image record read by this edge is reused, in seconds.

Glance asks a store for an image's size up to three times when one location
is added, then reads the data. The record fetched the first time answers the
following calls for this many seconds instead of asking central again. 0
asks central every time.

Possible values:
    * An integer from 0 to 3600; default 60.

Related options:
    * None
"""),
    cfg.ListOpt(
        'remote_glance_extra_properties',
        default=[],
        help="""
Custom properties of central images copied to the edge besides the default
set, as shell-style name patterns.

Whenever central's record lands in the edge database (a link, an on-demand
import, ``glance-remote import`` and ``sync``), only an allowlist of
central's custom properties is copied: by default ``hw_*``, ``os_*``,
``trait:*``, ``img_*``, ``architecture``, ``hypervisor_type``, ``vm_mode``
and ``auto_disk_config``, what nova reads to place and boot an instance.
Patterns listed here are copied too. Some properties are never copied,
whatever this option says: ``os_glance_*`` (Glance's own bookkeeping),
location data, and encryption key references (``cinder_encryption_key_*``,
``os_encrypt_*``), which belong to central: deleting the edge copy must
never delete central's key. Signatures are governed by
remote_glance_copy_signatures.

Possible values:
    * A comma-separated list of patterns (``*``, ``?``, ``[...]``), e.g.
      ``kernel_id,ramdisk_id,vmware_*``; default empty.

Related options:
    * remote_glance_copy_signatures
"""),
    cfg.BoolOpt(
        'remote_glance_copy_signatures',
        default=False,
        help="""
Copy central's image signature properties (``img_signature*``) to the edge.

Off by default: a signature names a certificate in central's key manager,
which the edge's nova can verify only if it uses the same key manager.
Enable it when edge and central share one (e.g. one Barbican).

Possible values:
    * true or false; default false.

Related options:
    * remote_glance_extra_properties
"""),
    cfg.BoolOpt(
        'remote_glance_import_on_demand',
        default=False,
        help="""
Import central images this edge has never heard of when they are asked for.

With this enabled, and the ``remote-glance-on-demand`` paste filter in the
edge's pipeline, a ``GET /v2/images/<id>`` or ``GET /v2/images/<id>/file`` that
the edge answers 404 is looked up at central. If central has an active image
with that ID that the requester could see there, the edge creates it on the
spot, with the same ID, central's full record, members and tags and a
``remote-glance://<backend>/<id>`` location, and answers the request as if it
had always had it. Images the requester could not see at central stay 404.
An ID the edge knows, even a deleted one, is never imported again. Every
import is logged. Central is asked at most once per ID per
remote_glance_record_ttl seconds for IDs it does not have.

Off by default: it lets any user of the edge cause a request to central and
a new edge image by naming an ID, and the images created this way bypass the
edge's image quotas. See the operator guide for the trade-offs.

Possible values:
    * true or false; default false.

Related options:
    * remote_glance_record_ttl
"""),
]


cache_opts = [
    cfg.StrOpt(
        'remote_glance_cache_dir',
        help="""
Directory of this backend's local image cache. Unset: no cache.

With a cache, the first read of an image streams it from central while
keeping a verified copy here; later reads, full or Range, come from this
directory, also while central is unreachable. Without one, every read goes
to central and nothing is available during a WAN outage. Give each
remote-glance backend its own directory, shared by all glance-api workers
of the node, on a local filesystem. glance-api refuses to start if the
directory cannot be created or used, or if it is on a network or cluster
filesystem (NFS, CIFS, CephFS, GlusterFS, Lustre, sshfs, ...), where the
cache's SQLite index and locks are not safe; an unknown filesystem type is
used with a warning naming it.

Possible values:
    * An absolute path; default unset (no cache).

Related options:
    * remote_glance_cache_max_size
"""),
    cfg.IntOpt(
        'remote_glance_cache_max_size',
        default=10 * units.Gi,
        min=units.Mi,
        help="""
Hard cap of the cache, in bytes of image data.

A fill reserves its image's whole size before it starts; least recently
used entries that are neither pinned nor being read are evicted to make
room. An image that cannot fit is streamed from central uncached, never
refused. The cap is never exceeded.

Possible values:
    * An integer of at least 1048576 (1 MiB); default 10737418240 (10 GiB).

Related options:
    * remote_glance_cache_dir
"""),
    cfg.IntOpt(
        'remote_glance_range_recheck',
        default=3600,
        min=0,
        max=86400,
        help="""
How long this edge remembers that central serves no byte ranges, in seconds.

Glance answers a Range request with 400 when the store holding the image
cannot read from an offset: rbd, swift, s3 and http lack random access. The
first such answer teaches the edge that central serves whole images only:
for this long, a read that starts past byte 0 (a resumed fill, a Range for
an image the cache does not hold yet) asks central for the whole image and
skips to its offset, and a Range at the edge is served from the cache's
fill. Afterwards one ranged request tries again, so a central moved to a
store with ranges is noticed. Each worker process learns by itself. 0 tries
a Range first every time (one extra request per ranged read from such a
central).

Possible values:
    * An integer from 0 to 86400; default 3600.

Related options:
    * remote_glance_cache_dir
"""),
    cfg.IntOpt(
        'remote_glance_breaker_threshold',
        default=3,
        min=0,
        max=1000,
        help="""
Failures that open the circuit breaker, as a count.

Consecutive failures to reach central (refused connections, timeouts, 5xx
answers) open the breaker. While it is open, requests that need central
fail at once (503) instead of each waiting for a timeout; cached images are
served as usual.
After remote_glance_breaker_reset seconds one request probes central again.
0 disables the breaker.

Possible values:
    * An integer from 0 to 1000; default 3.

Related options:
    * remote_glance_breaker_reset
    * timeout
"""),
    cfg.IntOpt(
        'remote_glance_breaker_reset',
        default=30,
        min=1,
        max=3600,
        help="""
How long the circuit breaker stays open before probing central, in seconds.

Possible values:
    * An integer from 1 to 3600; default 30.

Related options:
    * remote_glance_breaker_threshold
    * remote_glance_breaker_probe_interval
"""),
    cfg.FloatOpt(
        'remote_glance_breaker_probe_interval',
        default=1.0,
        min=0,
        max=3600,
        help="""
How often a worker asks central whether it answers again while the circuit
breaker is open, in seconds.

The question is cheap: central's versions document, without credentials,
with a 1 s timeout and no retry, at the URL of central's last answer. An
answer lets the request that asked try central (half-open): its success
closes the breaker, its failure opens it again at once. So the edge
notices within about this long that central is back instead of at the end
of remote_glance_breaker_reset; one request per worker and interval waits
for the answer (at most 1 s), the others keep failing fast.
0 disables the probe: the breaker waits for remote_glance_breaker_reset.

Possible values:
    * A number of seconds from 0 to 3600; default 1.

Related options:
    * remote_glance_breaker_reset
    * remote_glance_breaker_threshold
"""),
    cfg.BoolOpt(
        'remote_glance_metrics',
        default=True,
        help="""
Keep this backend's metrics in its cache index.

Every read is counted by its result (hit, miss, coalesced, peer read,
pass-through, or refused because central is unavailable or no WAN slot
came free), with the bytes by source, the fills' durations and the outcome
of the last request to central. All glance-api workers of the node add to
the same numbers, which survive restarts; ``glance-remote metrics``,
``glance-remote exporter`` and ``glance-remote cache stats`` read them.
Each read costs one small write to the index. False writes none of them
(the counters keep their last values); the entries' last access is still
recorded. Without remote_glance_cache_dir there is no index and nothing
is counted.

Possible values:
    * true or false; default true.

Related options:
    * remote_glance_cache_dir
"""),
]

copy_opts = [
    cfg.StrOpt(
        'remote_glance_copy_to_store',
        help="""
Store of this edge into which an image is copied after its first complete,
verified read, by name in enabled_backends (e.g. ``ceph``). Unset: no
automatic copy.

An edge whose computes boot from its own Ceph (nova's rbd image backend)
clones an image only when it has a location in that Ceph cluster; an image
read through remote-glance is downloaded by every compute instead. With this
set, once a whole image has been read through this backend (the cache's
first fill, verified against central's size and hash), glance-api asks
Glance's own ``copy-image`` import to copy the edge image under central's ID
(what ``glance-remote import`` and the on-demand import make) into this
store. Glance reads the image through this driver (from the cache), writes
it to the store and adds the location only if its size, checksum and os_hash
match the edge image's, which are central's. An edge image whose record
lacks central's size or hash is not copied. Copies run one at a time per
glance-api worker, in the background; a failed copy is not retried
automatically (``glance-remote prefetch --store`` retries it). Nothing is
written to central.

The copy runs as admin, outside Glance's quotas, so it is bounded: at most
one copy per central image and store. Links (edge images that name a
central image under an ID of their own) are never copied automatically, or
one user's N links would make N copies; they keep reading through this
backend's cache. An admin may still copy one with ``copy-image``.

Possible values:
    * The name of another, writable backend of enabled_backends (not a
      remote-glance one); default unset.

Related options:
    * remote_glance_copy_release_cache
    * weight (of the target backend: make its location the one Glance reads
      first)
"""),
    cfg.BoolOpt(
        'remote_glance_copy_release_cache',
        default=True,
        help="""
Release an image's cache entry once the store copy holds it.

After an automatic copy (remote_glance_copy_to_store), the image's data is
held twice at the edge: in the store and in this backend's cache. When every
live edge image that uses the central image has an active location in the
target store, the cache entry is evicted (unless it is pinned or being read)
and its disk space returns to the cache. The store's copy then serves
downloads and clones, also while central is unreachable. A Range request,
which Glance cannot serve from RBD, is then served through this backend
again, from central.

Possible values:
    * true or false; default true.

Related options:
    * remote_glance_copy_to_store
    * remote_glance_cache_dir
"""),
]

site_opts = [
    cfg.StrOpt(
        'remote_glance_coordination_url',
        help="""
Coordinator of this edge site, as a tooz backend URL (e.g.
``etcd3+http://127.0.0.1:2379``). Unset: every node of the site fills its
cache by itself, as a single node does.

An edge site that runs glance-api on several nodes, each with its own cache,
would otherwise pull an image from central once per node. With a
coordinator, the nodes take a per-image lock of the site: the node that gets
it reads the image from central; the others read it from that node over the
site's network (``remote-glance-peer`` paste filter), and every node still
verifies the whole image against central's record before it keeps or
releases it. When the coordinator cannot be reached, each node falls back to
filling by itself (logged once) until it returns. Needs the Python package
tooz (``pip install glance-store-remote[site]``) and the driver of the
coordinator (etcd3gw for etcd).

Possible values:
    * A tooz backend URL; default unset (no site coordination).

Related options:
    * remote_glance_peer_url
    * remote_glance_peer_secret
"""),
    cfg.URIOpt(
        'remote_glance_peer_url',
        schemes=['http', 'https'],
        help="""
URL at which the other nodes of the site reach this node's glance-api, for
peer reads. Unset: Glance's ``worker_self_reference_url``.

Advertised to the site through the coordinator; the other nodes read images
this node holds or is filling at
``<url>/remote-glance/peer/<backend>/<central image id>``. Give the node's
own address on the site network, not the site's load balancer.

Possible values:
    * An http or https URL; default unset (worker_self_reference_url).

Related options:
    * remote_glance_coordination_url
    * worker_self_reference_url
"""),
    cfg.StrOpt(
        'remote_glance_peer_secret',
        secret=True,
        help="""
Key shared by the nodes of the site, that authenticates peer reads.

Each peer read carries an HMAC-SHA256 of its method, path and expiry under
this key; the ``remote-glance-peer`` filter refuses (403) every request
without a valid, unexpired one before Glance sees it. Only nodes that know
the key can read images from each other this way: give the same random
value (e.g. 32 bytes from ``openssl rand -hex 32``) to every node of the
site and to no one else. Never logged.

Possible values:
    * A string of at least 16 characters; default unset (peer reads
      refused). Required when remote_glance_coordination_url is set.

Related options:
    * remote_glance_coordination_url
"""),
    cfg.StrOpt(
        'remote_glance_peer_ca_file',
        help="""
CA bundle that signs the certificates of the site's https peer URLs, as a
path to a PEM file.

Peer reads over https are always verified (there is no switch to turn that
off); unset, against the system's CAs. Peers reached over http (a site's
internal network, as glance-api's own worker_self_reference_url usually is)
need nothing.

Possible values:
    * A path to a PEM file; default unset (the system's CAs).

Related options:
    * remote_glance_peer_url
"""),
]

wan_opts = [
    cfg.IntOpt(
        'remote_glance_max_fills',
        default=0,
        min=0,
        max=1000,
        help="""
Images read from central at the same time, at most: per site when
remote_glance_coordination_url is set, else per node.

The WAN link to central is usually an edge site's narrowest. Every read of
image data from central (a cache fill, a read that passes the cache by, a
range) first takes one of this many slots: locks of the site's coordinator,
or lock files in this node's cache directory (shared by its glance-api
workers and ``glance-remote prefetch``). A read that finds none free waits
up to remote_glance_fill_slot_wait seconds, then is answered 503 (nothing is
written; the client may retry). While the coordinator is down each node
applies the cap by itself. Reads from the site's other nodes do not count.

Possible values:
    * 0 (no cap; the default) or a number of reads, up to 1000.

Related options:
    * remote_glance_max_bandwidth
    * remote_glance_fill_slot_wait
    * remote_glance_coordination_url
"""),
    cfg.IntOpt(
        'remote_glance_max_bandwidth',
        default=0,
        min=0,
        help="""
Bytes per second read from central, at most, in all (per site or per node,
as remote_glance_max_fills).

Each of the remote_glance_max_fills slots reads at most this divided by
their number (without remote_glance_max_fills: each read, at most this).
A share a slot leaves unused is not lent to the others, so the sum never
exceeds the cap; set remote_glance_max_fills to 1 to give one read the whole
link. E.g. 62500000 for 500 Mbit/s.

Possible values:
    * 0 (no cap; the default) or bytes per second.

Related options:
    * remote_glance_max_fills
"""),
    cfg.IntOpt(
        'remote_glance_fill_slot_wait',
        default=60,
        min=0,
        max=3600,
        help="""
How long a read waits for a free slot of remote_glance_max_fills, in seconds,
before it is answered 503 (central unavailable).

Possible values:
    * 0 to 3600 seconds; default 60.

Related options:
    * remote_glance_max_fills
"""),
]

store_opts = store_opts + cache_opts + copy_opts + site_opts + wan_opts


def register_keystoneauth_opts(conf, group):
    """Register keystoneauth1's session, auth and adapter options in *group*.

    Registering is idempotent for identical options, so every driver
    instance for the group may call it.
    """
    ks_loading.register_session_conf_options(conf, group)
    ks_loading.register_auth_conf_options(conf, group)
    ks_loading.register_adapter_conf_options(
        conf, group, include_deprecated=False)
    for name, value in KEYSTONEAUTH_DEFAULTS.items():
        conf.set_default(name, value, group=group)


def _keystoneauth_opts():
    opts = (ks_loading.get_session_conf_options() +
            ks_loading.get_auth_common_conf_options() +
            ks_loading.get_auth_plugin_conf_options('password') +
            ks_loading.get_adapter_conf_options(include_deprecated=False))
    for opt in opts:
        if opt.dest in KEYSTONEAUTH_DEFAULTS:
            opt.default = KEYSTONEAUTH_DEFAULTS[opt.dest]
    return opts


def list_opts():
    """Options of one remote-glance backend group, for the sample config."""
    opts = copy.deepcopy(store_opts) + _keystoneauth_opts()
    return [(SAMPLE_BACKEND, opts)]
