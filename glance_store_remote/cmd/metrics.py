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

"""``glance-remote metrics`` and ``glance-remote exporter``: the node's
Prometheus metrics (metrics.py), printed, written for node_exporter's
textfile collector, or served on ``/metrics``, for every remote-glance
backend of the node (or the one named with --backend). The outage
families come from the edge database that glance-api.conf names
(readiness.node_report), asked at each scrape; on a coordinated site the
site outage families also ask every member for its cache view
(site_outage_report). A backend without remote_glance_peer_secret cannot
ask its peers: it exports no site outage family.

Both only read the cache index, yet they run as the cache directory's
owner, the glance user, like the cache commands (cache.check_owner): a
reader of an SQLite database in WAL mode needs write access to its -shm
file, and a run as root would create index files that glance-api could
not open.
"""

import functools
import logging
import os
import re
import signal
import socket
import sys
import threading
from wsgiref import simple_server

from prometheus_client import exposition
from prometheus_client import registry as registry_module

from glance_store_remote.cmd import config
from glance_store_remote import metrics
from glance_store_remote.peers import client
from glance_store_remote import readiness

LOG = logging.getLogger(__name__)

_LISTEN = re.compile(r'\[(?P<v6>[^\]]+)\]:(?P<v6port>\d+)|'
                     r'(?P<host>[^:\[\]]+):(?P<port>\d+)')


def cmd_metrics(args, conf, backends):
    registry, stop = _registry(conf, backends)
    try:
        if args.textfile:
            _write_textfile(args.textfile, registry)
        else:
            sys.stdout.write(exposition.generate_latest(registry).decode())
    finally:
        stop()


def _write_textfile(path, registry):
    """Write atomically (a temporary file renamed over *path*), so that
    node_exporter never reads half a file.
    """
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise config.UsageError('--textfile %s: the directory %s does not '
                                'exist' % (path, folder))
    try:
        exposition.write_to_textfile(path, registry)
    except OSError as e:
        raise config.UsageError('--textfile %s: %s' % (path, e))


def cmd_exporter(args, conf, backends):
    """Serve until SIGTERM or SIGINT, then return (exit code 0)."""
    host, port = parse_listen(args.listen)
    logging.basicConfig(level=logging.INFO,
                        format='%(asctime)s %(levelname)s %(name)s '
                        '%(message)s')
    registry, stop = _registry(conf, backends)
    try:
        server = make_server(host, port, registry)
        try:
            _serve_until_signalled(server, backends)
        finally:
            server.server_close()
    finally:
        stop()


def _serve_until_signalled(server, backends):
    def shut_down(signum, frame):
        LOG.info('signal %d: stopping', signum)
        # shutdown() waits for serve_forever(), which this (main) thread
        # runs: ask from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()
    previous = {signum: signal.signal(signum, shut_down)
                for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        host, port = server.server_address[:2]
        LOG.info('serving the metrics of remote-glance backends %s on '
                 'http://%s/metrics', ', '.join(backends),
                 '[%s]:%d' % (host, port) if ':' in host
                 else '%s:%d' % (host, port))
        server.serve_forever()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def parse_listen(text):
    """(host, port) of ``HOST:PORT`` or ``[IPv6]:PORT``.

    :raises UsageError: anything else, or a port out of range
    """
    match = _LISTEN.fullmatch(text or '')
    port = match and int(match['v6port'] or match['port'])
    if not match or not 0 <= port <= 65535:
        raise config.UsageError(
            '--listen %r: expected HOST:PORT, e.g. 127.0.0.1:9612 or '
            '[::1]:9612' % text)
    return match['v6'] or match['host'], port


class _Handler(simple_server.WSGIRequestHandler):
    """Requests are logged at debug level only (a scrape every few
    seconds would flood the log).
    """

    def log_message(self, format, *args):
        LOG.debug('%s %s', self.address_string(), format % args)


def make_server(host, port, registry):
    """A threading WSGI server on (host, port), bound and not yet serving:
    ``/metrics`` is *registry*'s exposition, any other path a 404.

    :raises UsageError: the address cannot be resolved or bound
    """
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        server_class = type('Server', (exposition.ThreadingWSGIServer,),
                            {'address_family': family})
        return simple_server.make_server(host, port, wsgi_app(registry),
                                         server_class, _Handler)
    except OSError as e:
        raise config.UsageError('--listen %s:%d: %s' % (host, port, e))


def wsgi_app(registry):
    """prometheus_client's WSGI app on ``/metrics``; 404 elsewhere."""
    metrics_app = exposition.make_wsgi_app(registry)

    def app(environ, start_response):
        if environ.get('PATH_INFO') == '/metrics':
            return metrics_app(environ, start_response)
        start_response('404 Not Found',
                       [('Content-Type', 'text/plain; charset=utf-8')])
        return [b'glance-remote exporter: the metrics are at /metrics\n']
    return app


def _registry(conf, backends):
    """(a prometheus_client registry holding the node's collector, a
    callable that stops what it started: the sites' coordinators).

    :raises UsageError: a cache or a site cannot be used
    """
    sources = []
    try:
        for backend in backends:
            group = conf[backend]
            if not group.remote_glance_cache_dir:
                LOG.warning('remote-glance backend %s has no '
                            'remote_glance_cache_dir: only its outage '
                            'readiness is exported (the other metrics are '
                            'kept in the cache index)', backend)
                sources.append(metrics.source(group, backend, None))
                continue
            cache = config.cache(conf, backend)
            site = None
            if group.remote_glance_coordination_url:
                site = config.site(group, backend)
            central = config.central(conf, backend, own_breaker=True)
            sources.append(metrics.source(group, backend, cache, site,
                                          central))
    except BaseException:
        _stop(sources)
        raise
    registry = registry_module.CollectorRegistry(auto_describe=False)
    registry.register(metrics.NodeCollector(
        sources, outage_report=functools.partial(readiness.node_report,
                                                 conf),
        site_outage_report=functools.partial(site_outage_report, conf)))
    return registry, lambda: _stop(sources)


def site_outage_report(conf, backend, members):
    """readiness.site_report of *backend* over the cache views of the
    site's *members* (peer URLs), asked at once with the backend's peer
    secret, chunk size, CA file and metrics.SITE_VIEW_TIMEOUT; a member
    that does not answer holds nothing. None when the backend has no
    remote_glance_peer_secret (its peers answer only signed requests).

    Cost: one signed GET per member, and a query of the edge database.

    :raises glance_edge.DatabaseUnreadable
    """
    group = conf[backend]
    if not group.remote_glance_peer_secret:
        return None
    views = client.cache_views(
        group, backend, members, on_unreachable=_unreachable,
        timeout=metrics.SITE_VIEW_TIMEOUT)
    return readiness.site_report(conf, backend, views)


def _unreachable(url, error):
    # Each scrape asks again: a warning for each would flood the log; the
    # count says it (the node holds nothing there).
    LOG.debug('site outage readiness: %s', error)


def _stop(sources):
    for src in sources:
        if src.site is not None:
            src.site.stop()
