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

"""What a ``glance-remote`` command builds from the edge's glance-api.conf
and the operator's credentials: the remote-glance backend group, central's
client, the backend's cache, the node's site, the edge's API. Each is asked
of the one place that assembles a backend (backend.py); a configuration that
cannot be used is a UsageError (exit code 2).
"""

from oslo_config import cfg

from glance_store_remote import backend as backend_module
from glance_store_remote import catalog
from glance_store_remote import opts
from glance_store_remote import upstream

DEFAULT_CONFIG_FILE = '/etc/glance/glance-api.conf'
DRIVER_NAME = 'remote-glance'


class UsageError(Exception):
    """The command line or the configuration cannot be used as given."""


def load_backend(config_file, backend=None):
    """Read *config_file* and return (conf, backend group name).

    Without *backend*, the only remote-glance backend of
    ``enabled_backends`` is used.

    :raises UsageError: unreadable file, no or several remote-glance
        backends, or a backend that is not remote-glance
    """
    conf, ours = _read(config_file)
    if backend is None:
        if len(ours) != 1:
            raise UsageError(
                'enabled_backends in %s has %s remote-glance backends (%s); '
                'name one with --backend'
                % (config_file, len(ours) or 'no', ', '.join(ours) or '-'))
        backend = ours[0]
    _register(conf, config_file, ours, backend)
    return conf, backend


def load_backends(config_file, backend=None):
    """Read *config_file* and return (conf, [backend group names]): every
    remote-glance backend of ``enabled_backends`` (sorted), or only
    *backend*. For the commands that cover a whole node (metrics).

    :raises UsageError: unreadable file, no remote-glance backend, or a
        backend that is not remote-glance
    """
    conf, ours = _read(config_file)
    if backend is None and not ours:
        raise UsageError('enabled_backends in %s has no remote-glance '
                         'backend' % config_file)
    names = ours if backend is None else [backend]
    for name in names:
        _register(conf, config_file, ours, name)
    return conf, names


def _read(config_file):
    """(conf, sorted names of the remote-glance backends) of
    *config_file*.
    """
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.DictOpt('enabled_backends'))
    try:
        conf(args=[], project='glance', default_config_files=[config_file])
    except (cfg.Error, OSError) as e:
        raise UsageError('cannot read %s: %s' % (config_file, e))
    enabled = conf.enabled_backends or {}
    return conf, sorted(name for name, kind in enabled.items()
                        if kind == DRIVER_NAME)


def _register(conf, config_file, ours, backend):
    """Register the options of remote-glance backend group *backend*."""
    if backend not in ours:
        raise UsageError('backend %r is not a remote-glance backend in '
                         'enabled_backends of %s' % (backend, config_file))
    conf.register_opts(opts.store_opts, group=backend)
    opts.register_keystoneauth_opts(conf, backend)


def central(conf, backend, breaker_state=None, own_breaker=False):
    try:
        return upstream.Central.from_conf(conf, backend,
                                          breaker_state=breaker_state,
                                          own_breaker=own_breaker)
    except Exception as e:
        raise UsageError('[%s] cannot describe a central Glance: %s'
                         % (backend, upstream.redact(str(e))))


def cache(conf, backend):
    try:
        return backend_module.cli_cache(conf[backend], backend)
    except backend_module.ConfigError as e:
        raise UsageError(str(e))


def site(group, backend):
    try:
        return backend_module.member_site(group, backend)
    except backend_module.ConfigError as e:
        raise UsageError(str(e))


def edge_adapter(args):
    """An adapter on the edge's images API (/v2), with the operator's
    OpenStack credentials.
    """
    import openstack
    try:
        return openstack.connect(cloud=args.os_cloud).image
    except Exception as e:
        raise UsageError('cannot use the edge Glance with your OpenStack '
                         'credentials (--os-cloud, clouds.yaml or OS_* '
                         'variables): %s' % upstream.redact(str(e)))


def edge(args):
    """The edge's images API, with the operator's OpenStack credentials."""
    return catalog.EdgeAPI(edge_adapter(args))
