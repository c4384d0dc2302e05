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

"""One child daemon's life, the same for every part of the lab (Glance,
Keystone, MariaDB, etcd, haproxy, Ceph, RabbitMQ, libvirt, nova).

A daemon runs in the foreground as a child of the test process, leading a
process group of its own (its workers join it), its output appended to a
log file; it gets SIGTERM when the thread that started it ends
(PR_SET_PDEATHSIG), so a test process that dies takes its daemons along.
Readiness is waited for within a bounded time, stopped early when the
daemon exits. A daemon is stopped by its PID's group: SIGTERM, a bounded
grace, SIGKILL to whatever is left, reaped within a bounded time. Nothing
is ever killed by name. Whatever a caller track()ed and did not forget()
is stopped at interpreter exit, the latest first.
"""

import atexit
import contextlib
import ctypes
import os
import random
import signal
import socket
import subprocess
import threading
import time

HOST = '127.0.0.1'
STOP_GRACE = 10   # seconds after SIGTERM before SIGKILL, then to reap

# Listening ports come from below Linux's ephemeral range (32768-60999 by
# default): a port taken from it may be the source port of any outgoing
# connection of the machine (a busy test worker makes thousands) before
# the server it was meant for binds it.
PORT_RANGE = (20000, 32767)

_PR_SET_PDEATHSIG = 1
_live = {}   # what track() was given and forget() was not, in order
_live_lock = threading.Lock()
_ports_given = set()
_ports_lock = threading.Lock()


def die_with_parent():
    """preexec_fn: the child gets SIGTERM when the thread that started it
    ends (a test process that dies without cleaning up).
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG,
                                                signal.SIGTERM)
    except Exception:
        pass


def spawn(command, log_file, cwd, env=None):
    """Start *command* in the foreground, leading a process group of its
    own, stdout and stderr appended to *log_file*; returns its Popen.
    """
    with open(log_file, 'ab') as out:
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=die_with_parent)


def wait_until(ready, timeout, procs, what, log_tail, error=RuntimeError,
               interval=0.1):
    """Call ready() until it returns true, for at most *timeout* seconds
    (an exception from it counts as not yet). Raises *error*, with
    log_tail(), as soon as one of *procs* ({name: Popen}) exits, or when
    the time is up.
    """
    deadline = time.monotonic() + timeout
    while True:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise error('%s exited with %s while waiting for %s:\n%s'
                            % (name, proc.returncode, what, log_tail()))
        try:
            if ready():
                return
        except Exception:
            pass
        if time.monotonic() > deadline:
            raise error('no %s after %ss:\n%s' % (what, timeout, log_tail()))
        time.sleep(interval)


def free_port():
    """A free port of 127.0.0.1 that this process has not handed out
    before, chosen at random in PORT_RANGE (so that the test workers, which
    do not share _ports_given, seldom pick the same one) and free when
    asked.
    """
    with _ports_lock:
        for _ in range(1000):
            port = random.randint(*PORT_RANGE)
            if port in _ports_given:
                continue
            with socket.socket() as sock:
                try:
                    sock.bind((HOST, port))
                except OSError:
                    continue
            _ports_given.add(port)
            return port
    raise RuntimeError('no fresh free port on %s' % HOST)


def port_open(port, host=HOST):
    """True when something accepts connections on *host*:*port*."""
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def signal_group(proc, signum):
    """Send *signum* to the process group *proc* leads (by its PID), if
    any is left.
    """
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(proc, timeout):
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        pass


def stop(proc, grace=STOP_GRACE):
    """Stop the group *proc* leads: SIGCONT (it may be frozen) and
    SIGTERM, at most *grace* seconds for the leader to exit, then SIGKILL
    to whatever is left in the group (also after the leader exited), at
    most *grace* seconds more to reap the leader. None is a no-op.
    """
    if proc is None:
        return
    signal_group(proc, signal.SIGCONT)
    signal_group(proc, signal.SIGTERM)
    _reap(proc, grace)
    kill(proc, grace)


def kill(proc, timeout=STOP_GRACE):
    """SIGKILL the group *proc* leads at once (a crash) and reap the
    leader within *timeout* seconds. None is a no-op.
    """
    if proc is None:
        return
    signal_group(proc, signal.SIGKILL)
    _reap(proc, timeout)


def track(thing):
    """Stop *thing* (anything with stop()) at interpreter exit unless it
    is forgotten first.
    """
    with _live_lock:
        _live[thing] = None


def forget(thing):
    with _live_lock:
        _live.pop(thing, None)


@contextlib.contextmanager
def starting(thing):
    """Track *thing* (see track()) while the block starts it; stop it if
    the block fails, whatever started by then.
    """
    track(thing)
    try:
        yield thing
    except BaseException:
        thing.stop()
        raise


def skip_reason(tier, missing, packages):
    """Why *tier* skips on this machine: what is *missing* and the Debian
    *packages* that bring it (as .ci/run installs them); None when nothing
    is missing.
    """
    if not missing:
        return None
    return ('%s TIER SKIPPED: not installed here: %s. Install as root: '
            'apt-get install --no-install-recommends %s (.ci/run does it on '
            'CI)' % (tier.upper(), ', '.join(missing), ' '.join(packages)))


@atexit.register
def _stop_everything():
    with _live_lock:
        leftovers = list(_live)
    for thing in reversed(leftovers):
        thing.stop()
