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

"""Run glance_edge.py's Glance-facing functions inside one Glance release,
on a database that release's ``glance-manage db_sync`` made; print what
they did as JSON. Run by test_glance_edge.py with each supported Glance's
python (the project root on PYTHONPATH):

    python -m tests.functional.glance_edge_probe CONFIG_FILE

Glance's task pool is replaced by one that only records what it was given:
the copy-image task itself is Glance's business, not this module's.
"""

import datetime
import json
import sys

CENTRAL_ID = '3f1c4a0e-8a2b-4d7e-9c55-0a1b2c3d4e5f'
LINK_ID = '9d0e2f4a-1b3c-4d5e-8f70-112233445566'
LOCATION = 'remote-glance://central/' + CENTRAL_ID


class RecordingPool:
    def __init__(self):
        self.spawned = []

    def spawn(self, function, *args):
        self.spawned.append(function)


def main(argv):
    from oslo_config import cfg
    import sqlalchemy

    from glance.api import common as api_common
    from glance.common import config as glance_config  # noqa: F401 (opts)
    from glance import context as glance_context
    from glance.db.sqlalchemy import api as db_api
    from glance import gateway as glance_gateway

    from glance_store_remote import exceptions
    from glance_store_remote import glance_edge

    cfg.CONF(['--config-file', argv[1]], project='glance')
    pool = RecordingPool()
    api_common.get_thread_pool = lambda name: pool
    out = {}
    records = glance_edge.EdgeRecords()
    row = {'id': CENTRAL_ID, 'status': 'active', 'name': 'cirros',
           'disk_format': 'raw', 'container_format': 'bare',
           'size': 3, 'checksum': 'c', 'os_hash_algo': 'sha512',
           'os_hash_value': 'h', 'owner': 'p-central',
           'visibility': 'public',
           'properties': {'os_distro': 'cirros'},
           'locations': [{'url': LOCATION, 'metadata': {'store': 'central'},
                          'status': 'active'}]}
    out['known_before'] = records.known(CENTRAL_ID)
    records.create(row, ['edge'], {'p-member': 'accepted'})
    records.create(dict(row, id=LINK_ID, owner='p-user'), [], {})
    try:
        records.create(row, [], {})
        out['duplicate'] = None
    except Exception as e:
        out['duplicate'] = type(e).__name__
    records.update(CENTRAL_ID, {'min_disk': 2}, {'hw_disk_bus': 'virtio'})
    record = records.get(CENTRAL_ID)
    out['record'] = {'min_disk': record['min_disk'],
                     'properties': record['properties']}
    out['view'] = glance_edge.api_view(record)
    out['count'] = glance_edge.count_live_locations(LOCATION)
    out['live'] = glance_edge.live_images_at(LOCATION)
    edge = glance_edge.GlanceEdge()
    out['users'] = [image['id'] for image in edge.users(LOCATION)]

    # A copy started as Glance's import call starts it: a task and the lock.
    task_id = edge.start_copy(CENTRAL_ID, 'ceph')
    image = edge.image(CENTRAL_ID)
    out['lock_taken'] = image.get(glance_edge.IMPORT_LOCK) == task_id
    out['spawned'] = len(pool.spawned)
    context = glance_context.get_admin_context()
    gateway = glance_gateway.Gateway()
    task_repo = gateway.get_task_repo(context)
    task = task_repo.get(task_id)
    out['task'] = {'type': task.type, 'owner': task.owner,
                   'input': task.task_input}
    # A valid lock refuses a second copy.
    try:
        edge.start_copy(CENTRAL_ID, 'ceph')
        out['second'] = 'started'
    except exceptions.ImportLocked:
        out['second'] = 'locked'
    # A lock whose task has not moved for over an hour is recovered, as
    # Glance's import call recovers it, with the stale task's progress.
    task.begin_processing()
    task_repo.save(task)
    records.update(CENTRAL_ID, {}, {glance_edge.IMPORTING: 'ceph'})
    stale = datetime.datetime.utcnow() - datetime.timedelta(hours=2)
    with db_api.get_engine().begin() as connection:
        connection.execute(sqlalchemy.text(
            'UPDATE tasks SET updated_at = :stale WHERE id = :id'),
            {'stale': stale, 'id': task_id})
    recovered = edge.start_copy(CENTRAL_ID, 'ceph')
    out['recovered'] = recovered != task_id
    out['stale_task'] = {'status': task_repo.get(task_id).status,
                         'message': task_repo.get(task_id).message}
    image = edge.image(CENTRAL_ID)
    out['lock_after'] = image.get(glance_edge.IMPORT_LOCK) == recovered
    out['importing_after'] = image.get(glance_edge.IMPORTING)
    # A lock naming a task that does not exist is stale at once.
    records.update(LINK_ID, {}, {glance_edge.IMPORT_LOCK: 'no-such-task'})
    out['missing_task'] = edge.start_copy(LINK_ID, 'ceph') is not None
    out['spawned_end'] = len(pool.spawned)
    print(json.dumps(out, sort_keys=True, default=str))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
