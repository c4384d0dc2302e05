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
]


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
