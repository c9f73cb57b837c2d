# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Apply and delete Kubernetes objects with server-side apply; wait until they are ready.

Change detection is exact: every object is first applied with ``dryRun=All``, and the server's
answer (defaults, admission and all) is compared with the live object, after dropping what
changes on every write (resourceVersion, managedFields, ...) and ``status``. The fields this
field manager owns are compared too, so taking over a field from another manager counts as a
change. Only a difference leads to a real apply; in check mode the dry run is the plan.
"""

from __future__ import annotations

import base64
import binascii
import copy
import difflib
import hashlib
import hmac
import os
import time

from ansible_collections.kubeforge.cluster.plugins.module_utils import kube_api
from ansible_collections.kubeforge.cluster.plugins.module_utils.yaml_emit import dump

VOLATILE_METADATA = ('managedFields', 'resourceVersion', 'uid', 'generation', 'creationTimestamp', 'selfLink')
LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration'
CRD_API_VERSION = 'apiextensions.k8s.io/v1'
APPLY_CONTENT_TYPE = 'application/apply-patch+yaml'
POLL_INTERVAL = 1.0
LIST_PAGE = 250


class ManifestError(Exception):
    """What went wrong, naming the object; ``objects`` holds what was done before."""

    def __init__(self, msg, objects=None):
        super().__init__(msg)
        self.objects = objects or []


def group_of(api_version):
    return api_version.split('/', 1)[0] if '/' in api_version else ''


def describe(kind, namespace, name):
    return '%s %s/%s' % (kind, namespace, name) if namespace else '%s %s' % (kind, name)


def prepare(definitions, labels=None):
    """Validated deep copies of ``definitions`` with ``labels`` set; ``kind: List`` is expanded.

    Empty entries (as YAML documents separated by a trailing ``---`` give) are skipped. Every
    problem is reported at once.
    """
    errors = []
    labels = labels or {}
    for key, value in labels.items():
        if not isinstance(value, str):
            errors.append('labels.%s: label values must be strings, got %r' % (key, value))
    objects = []

    def visit(item, where):
        if item is None:
            return
        if not isinstance(item, dict):
            errors.append('%s: must be a mapping (a Kubernetes object), got %s' % (where, type(item).__name__))
            return
        if item.get('kind') == 'List' and item.get('apiVersion') == 'v1' and isinstance(item.get('items'), list):
            for index, sub in enumerate(item['items']):
                visit(sub, '%s.items[%d]' % (where, index))
            return
        problems = []
        for field in ('apiVersion', 'kind'):
            if not isinstance(item.get(field), str) or not item.get(field):
                problems.append('no %s' % field)
        metadata = item.get('metadata')
        if not isinstance(metadata, dict):
            problems.append('no metadata')
        else:
            if not isinstance(metadata.get('name'), str) or not metadata.get('name'):
                problems.append('no metadata.name (generateName is not supported: an applied object needs a name)')
            if metadata.get('namespace') is not None and not isinstance(metadata.get('namespace'), str):
                problems.append('metadata.namespace must be a string')
            if metadata.get('labels') is not None and not isinstance(metadata.get('labels'), dict):
                problems.append('metadata.labels must be a mapping')
        if problems:
            name = metadata.get('name') if isinstance(metadata, dict) else None
            label = '%s (%s %s)' % (where, item.get('kind') or '?', name) if name else where
            errors.append('%s: %s' % (label, '; '.join(problems)))
            return
        obj = copy.deepcopy(item)
        if labels:
            obj['metadata']['labels'] = dict(obj['metadata'].get('labels') or {}, **labels)
        objects.append(obj)

    for position, entry in enumerate(definitions or []):
        visit(entry, 'definitions[%d]' % position)
    if errors:
        raise ManifestError('%d problem(s) in the definitions:\n%s' % (len(errors), '\n'.join('- ' + e for e in errors)))
    return objects


def planned_without_cluster(definitions, labels=None, state='present', namespace='default'):
    """What check mode reports where no cluster runs yet (no kubeconfig on the host: a first
    install's plan): every object of ``definitions`` would be created; nothing would be deleted."""
    objects = prepare(definitions, labels) if state == 'present' else []
    planned = [{'apiVersion': o['apiVersion'], 'kind': o['kind'], 'name': o['metadata']['name'],
                'namespace': o['metadata'].get('namespace') or namespace, 'action': 'created'} for o in objects]
    return {'changed': bool(planned), 'objects': planned}


def secret_values(objects):
    """Every Secret value in ``objects`` (as given, not yet validated), for the module's no_log list."""
    values = set()
    for obj in objects or []:
        if not isinstance(obj, dict):
            continue
        if obj.get('kind') == 'List' and isinstance(obj.get('items'), list):
            values.update(secret_values(obj['items']))
            continue
        if obj.get('kind') != 'Secret' or obj.get('apiVersion') != 'v1':
            continue
        for field in ('data', 'stringData'):
            entries = obj.get(field)
            for value in (entries.values() if isinstance(entries, dict) else []):
                if isinstance(value, str) and value:
                    values.add(value)
                    if field == 'data':
                        try:
                            values.add(base64.b64decode(value, validate=True).decode('utf-8'))
                        except (binascii.Error, ValueError):
                            pass
    return values


def normalize(obj):
    """``obj`` without status and the metadata that changes on every write."""
    if not obj:
        return {}
    out = copy.deepcopy(obj)
    out.pop('status', None)
    metadata = out.get('metadata') or {}
    for field in VOLATILE_METADATA:
        metadata.pop(field, None)
    return out


def owned_fields(obj, field_manager):
    """The fields ``field_manager`` owns through apply in ``obj`` (its managedFields entry)."""
    for entry in (obj or {}).get('metadata', {}).get('managedFields') or []:
        if (entry.get('manager') == field_manager and entry.get('operation') == 'Apply'
                and not entry.get('subresource')):
            return entry.get('fieldsV1')
    return None


class Masker(object):
    """Replaces Secret values with a marker that changes with the value and reveals nothing.

    The marker is an HMAC under a key made for this run, so equal values give equal markers
    within one diff, and a marker cannot be checked against guesses outside the run.
    """

    def __init__(self, key=None):
        self.key = key if key is not None else os.urandom(32)

    def marker(self, data):
        if isinstance(data, str):
            data = data.encode('utf-8')
        digest = hmac.new(self.key, data, hashlib.sha256).hexdigest()
        return '<hidden: hmac-sha256 %s>' % digest[:16]

    def mask(self, obj):
        if not obj or obj.get('kind') != 'Secret' or obj.get('apiVersion') != 'v1':
            return obj
        out = copy.deepcopy(obj)
        for field in ('data', 'stringData'):
            values = out.get(field)
            if not isinstance(values, dict):
                continue
            for key, value in values.items():
                raw = value
                if field == 'data' and isinstance(value, str):
                    try:
                        raw = base64.b64decode(value, validate=True)
                    except (binascii.Error, ValueError):
                        raw = value
                values[key] = self.marker(raw if isinstance(raw, (bytes, str)) else repr(raw))
        annotations = (out.get('metadata') or {}).get('annotations') or {}
        if LAST_APPLIED in annotations:
            annotations[LAST_APPLIED] = self.marker(str(annotations[LAST_APPLIED]))
        return out


def _text(obj):
    if not obj:
        return ''
    return dump(obj, sort_keys=True, first_keys=('apiVersion', 'kind', 'metadata', 'spec'))


# Readiness by kind: each returns (ready, what is missing, failure or None).

def _generation_pending(obj):
    observed = (obj.get('status') or {}).get('observedGeneration')
    generation = (obj.get('metadata') or {}).get('generation')
    if observed is None or (generation is not None and observed < generation):
        return 'the controller has not observed generation %s yet (observed: %s)' % (generation, observed)
    return None


def _conditions(obj):
    return {c.get('type'): c for c in (obj.get('status') or {}).get('conditions') or [] if isinstance(c, dict)}


def _condition_text(condition):
    if not condition:
        return ''
    parts = [str(condition.get(k)) for k in ('reason', 'message') if condition.get(k)]
    return ' (%s)' % ': '.join(parts) if parts else ''


def _deployment(obj):
    pending = _generation_pending(obj)
    if pending:
        return False, pending, None
    progressing = _conditions(obj).get('Progressing')
    if progressing and progressing.get('reason') == 'ProgressDeadlineExceeded':
        return False, 'rollout stalled', 'rollout exceeded its progress deadline%s' % _condition_text(progressing)
    status = obj.get('status') or {}
    desired = (obj.get('spec') or {}).get('replicas', 1)
    updated = status.get('updatedReplicas') or 0
    total = status.get('replicas') or 0
    ready = status.get('readyReplicas') or 0
    available = status.get('availableReplicas') or 0
    if updated < desired:
        return False, '%d of %d replicas updated' % (updated, desired), None
    if total > updated:
        return False, '%d old replicas pending termination' % (total - updated), None
    if ready < desired or available < desired:
        extra = ' (%d ready)' % ready if ready != available else ''
        return False, '%d of %d replicas available%s' % (available, desired, extra), None
    return True, '%d of %d replicas available' % (available, desired), None


def _statefulset(obj):
    pending = _generation_pending(obj)
    if pending:
        return False, pending, None
    spec = obj.get('spec') or {}
    status = obj.get('status') or {}
    desired = spec.get('replicas', 1)
    ready = status.get('readyReplicas') or 0
    available = status.get('availableReplicas', ready) or 0
    updated = status.get('updatedReplicas') or 0
    if ready < desired:
        return False, '%d of %d replicas ready' % (ready, desired), None
    if available < desired:
        return False, '%d of %d replicas available' % (available, desired), None
    strategy = spec.get('updateStrategy') or {}
    if strategy.get('type', 'RollingUpdate') == 'RollingUpdate':
        partition = (strategy.get('rollingUpdate') or {}).get('partition') or 0
        if partition:
            if updated < desired - partition:
                return False, '%d of %d replicas updated' % (updated, desired - partition), None
        elif status.get('updateRevision') != status.get('currentRevision'):
            return False, '%d of %d replicas updated to revision %s' % (updated, desired, status.get('updateRevision')), None
    return True, '%d of %d replicas ready' % (ready, desired), None


def _daemonset(obj):
    pending = _generation_pending(obj)
    if pending:
        return False, pending, None
    status = obj.get('status') or {}
    desired = status.get('desiredNumberScheduled') or 0
    updated = status.get('updatedNumberScheduled') or 0
    available = status.get('numberAvailable') or 0
    on_delete = ((obj.get('spec') or {}).get('updateStrategy') or {}).get('type') == 'OnDelete'
    if not on_delete and updated < desired:
        return False, '%d of %d pods updated' % (updated, desired), None
    if available < desired:
        return False, '%d of %d pods available' % (available, desired), None
    return True, '%d of %d pods available' % (available, desired), None


def _condition_true(name, failing=None):
    def check(obj):
        conditions = _conditions(obj)
        condition = conditions.get(name)
        if condition and condition.get('status') == 'True':
            return True, name, None
        if failing:
            bad_type, bad_status = failing
            bad = conditions.get(bad_type)
            if bad and bad.get('status') == bad_status:
                return False, '%s is %s' % (bad_type, bad_status), '%s is %s%s' % (bad_type, bad_status, _condition_text(bad))
        return False, 'not %s yet%s' % (name, _condition_text(condition)), None
    return check


def _job(obj):
    conditions = _conditions(obj)
    if (conditions.get('Complete') or {}).get('status') == 'True':
        return True, 'Complete', None
    failed = conditions.get('Failed')
    if failed and failed.get('status') == 'True':
        return False, 'Failed', 'the Job failed%s' % _condition_text(failed)
    status = obj.get('status') or {}
    return False, 'not Complete yet: %d succeeded, %d active, %d failed' % (
        status.get('succeeded') or 0, status.get('active') or 0, status.get('failed') or 0), None


def _pod(obj):
    phase = (obj.get('status') or {}).get('phase')
    condition = _conditions(obj).get('Ready')
    if condition and condition.get('status') == 'True':
        return True, 'Ready', None
    if phase in ('Failed', 'Succeeded'):
        return False, 'phase %s' % phase, 'the Pod has terminated (phase %s) and will never be Ready' % phase
    return False, 'not Ready yet (phase %s)%s' % (phase, _condition_text(condition)), None


def _namespace(obj):
    phase = (obj.get('status') or {}).get('phase')
    return phase == 'Active', 'phase %s' % phase, None


READINESS = {
    ('apps', 'Deployment'): _deployment,
    ('apps', 'StatefulSet'): _statefulset,
    ('apps', 'DaemonSet'): _daemonset,
    ('apiextensions.k8s.io', 'CustomResourceDefinition'): _condition_true('Established', ('NamesAccepted', 'False')),
    ('apiregistration.k8s.io', 'APIService'): _condition_true('Available'),
    ('batch', 'Job'): _job,
    ('', 'Pod'): _pod,
    ('', 'Namespace'): _namespace,
}


def readiness(obj):
    """(ready, state, failure) of a live object; kinds without a notion of ready are ready."""
    check = READINESS.get((group_of(obj.get('apiVersion', '')), obj.get('kind')))
    if check is None:
        return True, 'exists', None
    return check(obj)


class Manifest(object):
    """One run: the objects handled so far, their diffs, and what is left to wait for."""

    def __init__(self, client, field_manager='kubeforge', force_conflicts=True, field_validation='Strict',
                 namespace='default', check_mode=False, want_diff=False, wait_timeout=300,
                 clock=time.monotonic, sleep=time.sleep, masker=None):
        self.client = client
        self.discovery = kube_api.Discovery(client)
        self.field_manager = field_manager
        self.force_conflicts = force_conflicts
        self.field_validation = field_validation
        self.namespace = namespace
        self.check_mode = check_mode
        self.want_diff = want_diff
        self.wait_timeout = wait_timeout
        self.clock = clock
        self.sleep = sleep
        self.masker = masker or Masker()
        self.objects = []
        self.diffs = []
        self.warnings = []
        self._present = []   # (Resource, namespace, name) to wait for
        self._deleted = []
        self._crds = {}      # (group, kind) -> (CRD name, {served versions}, action, scope)
        self._namespaces = {}  # name -> action, for Namespaces handled in this run
        self._seen = set()

    # -- results -------------------------------------------------------------------------------

    @property
    def changed(self):
        return any(o['action'] in ('created', 'configured', 'deleted') for o in self.objects)

    def result(self):
        out = {'changed': self.changed, 'objects': self.objects}
        if self.want_diff:
            out['diff'] = self.diffs
        return out

    def _record(self, api_version, kind, namespace, name, action, before=None, after=None):
        self.objects.append({'apiVersion': api_version, 'kind': kind, 'namespace': namespace, 'name': name,
                             'action': action})
        if self.want_diff and action in ('created', 'configured', 'deleted'):
            header = describe(kind, namespace, name)
            self.diffs.append({
                'before_header': header, 'after_header': header,
                'before': _text(self.masker.mask(normalize(before))),
                'after': _text(self.masker.mask(normalize(after))),
            })

    def _fail(self, msg):
        return ManifestError(msg, list(self.objects))

    # -- discovery -----------------------------------------------------------------------------

    def _resource(self, api_version, kind, where):
        """The Resource of apiVersion/kind; waits for a CRD applied earlier in this run to be served."""
        resource = self._find(api_version, kind, where)
        if resource is not None:
            return resource
        crd = self._crds.get((group_of(api_version), kind))
        if crd is not None and api_version.split('/')[-1] in crd[1] and not self.check_mode:
            return self._await_kind(api_version, kind, crd[0], where)
        return None

    def _find(self, api_version, kind, where):
        try:
            return self.discovery.find(api_version, kind)
        except kube_api.ApiError as exc:
            raise self._fail('%s: discovery of %s failed: %s' % (where, api_version, exc))
        except kube_api.ConnectionFailed as exc:
            raise self._fail('%s: %s' % (where, exc))

    def _unknown_kind(self, api_version, kind, where):
        served = self.discovery.served_kinds(api_version)
        if served is None:
            return self._fail('%s: the API server does not serve apiVersion %s (kind %s)' % (where, api_version, kind))
        hint = difflib.get_close_matches(kind, served, n=1)
        return self._fail('%s: the API server does not know kind %s in apiVersion %s%s'
                          % (where, kind, api_version, '; did you mean %s?' % hint[0] if hint else ''))

    def _await_kind(self, api_version, kind, crd_name, where):
        deadline = self.clock() + self.wait_timeout
        while True:
            self.sleep(POLL_INTERVAL)
            resource = self._find(api_version, kind, where)
            if resource is not None:
                return resource
            if self.clock() >= deadline:
                state = self._state_of(CRD_API_VERSION, 'CustomResourceDefinition', None, crd_name)
                raise self._fail('%s: kind %s of apiVersion %s, defined by CustomResourceDefinition %s in this run, '
                                 'was not served after %d s (the CustomResourceDefinition: %s)'
                                 % (where, kind, api_version, crd_name, self.wait_timeout, state))

    def _state_of(self, api_version, kind, namespace, name):
        resource = self.discovery.find(api_version, kind)
        live = self._get(resource, namespace, name, describe(kind, namespace, name)) if resource else None
        if live is None:
            return 'not found'
        return readiness(live)[1]

    # -- requests ------------------------------------------------------------------------------

    def _call(self, where, method, path, query=None, body=None, content_type='application/json', missing_ok=False):
        try:
            return self.client.request(method, path, query=query, body=body, content_type=content_type)
        except kube_api.ApiError as exc:
            if missing_ok and exc.status == 404:
                return None
            raise self._fail('%s: %s' % (where, exc))
        except kube_api.ConnectionFailed as exc:
            raise self._fail('%s: %s' % (where, exc))

    def _get(self, resource, namespace, name, where):
        return self._call(where, 'GET', resource.path(name, namespace), missing_ok=True)

    def _apply(self, resource, namespace, name, obj, dry_run):
        query = [('fieldManager', self.field_manager)]
        if self.force_conflicts:
            query.append(('force', 'true'))
        if self.field_validation:
            query.append(('fieldValidation', self.field_validation))
        if dry_run:
            query.append(('dryRun', 'All'))
        return self.client.request('PATCH', resource.path(name, namespace), query=query, body=obj,
                                   content_type=APPLY_CONTENT_TYPE)

    # -- present -------------------------------------------------------------------------------

    def _place(self, resource, obj):
        """The object's namespace: the default for a namespaced kind, none for a cluster-wide one."""
        metadata = obj['metadata']
        if resource.namespaced:
            metadata['namespace'] = metadata.get('namespace') or self.namespace
            return metadata['namespace']
        metadata.pop('namespace', None)
        return None

    def apply(self, obj):
        api_version, kind, name = obj['apiVersion'], obj['kind'], obj['metadata']['name']
        given_ns = obj['metadata'].get('namespace')
        where = describe(kind, given_ns, name)
        resource = self._resource(api_version, kind, where)
        if resource is None:
            crd = self._crds.get((group_of(api_version), kind))
            if self.check_mode and crd is not None and crd[2] != 'unchanged':
                return self._planned(obj, 'its CustomResourceDefinition %s is not applied yet' % crd[0])
            raise self._unknown_kind(api_version, kind, where)
        namespace = self._place(resource, obj)
        where = describe(kind, namespace, name)
        live = self._get(resource, namespace, name, where)
        try:
            planned = self._apply(resource, namespace, name, obj, dry_run=True)
        except kube_api.ApiError as exc:
            if (exc.status == 404 and self.check_mode and namespace
                    and self._namespaces.get(namespace) == 'created'):
                return self._planned(obj, 'its Namespace %s is not created yet' % namespace)
            raise self._fail('%s: %s' % (where, exc))
        except kube_api.ConnectionFailed as exc:
            raise self._fail('%s: %s' % (where, exc))
        same = (live is not None and normalize(live) == normalize(planned)
                and owned_fields(live, self.field_manager) == owned_fields(planned, self.field_manager))
        if same:
            action, after = 'unchanged', live
        else:
            action = 'created' if live is None else 'configured'
            after = planned
            if not self.check_mode:
                try:
                    after = self._apply(resource, namespace, name, obj, dry_run=False)
                except (kube_api.ApiError, kube_api.ConnectionFailed) as exc:
                    raise self._fail('%s: %s' % (where, exc))
        self._note(obj, action)
        self._record(api_version, kind, namespace, name, action, live, after)
        self._present.append((resource, namespace, name))

    def _planned(self, obj, why):
        """Check mode, when the server cannot dry-run ``obj`` because an earlier object is only planned."""
        metadata = obj['metadata']
        namespace = metadata.get('namespace')
        crd = self._crds.get((group_of(obj['apiVersion']), obj['kind']))
        if crd is not None and namespace is None and crd[3] == 'Namespaced':
            namespace = metadata['namespace'] = self.namespace
        elif crd is not None and crd[3] != 'Namespaced':
            namespace = None
        self.warnings.append('%s: check mode cannot dry-run this object because %s; it would be created as given'
                             % (describe(obj['kind'], namespace, metadata['name']), why))
        self._note(obj, 'created')
        self._record(obj['apiVersion'], obj['kind'], namespace, metadata['name'], 'created', None, obj)

    def _note(self, obj, action):
        kind, api_version = obj['kind'], obj['apiVersion']
        if kind == 'Namespace' and api_version == 'v1':
            self._namespaces[obj['metadata']['name']] = action
        elif kind == 'CustomResourceDefinition' and group_of(api_version) == 'apiextensions.k8s.io':
            spec = obj.get('spec') or {}
            names = spec.get('names') or {}
            versions = {v.get('name') for v in spec.get('versions') or [] if isinstance(v, dict) and v.get('served', True)}
            if spec.get('group') and names.get('kind'):
                self._crds[(spec['group'], names['kind'])] = (obj['metadata']['name'], versions, action,
                                                              spec.get('scope', 'Namespaced'))

    # -- absent --------------------------------------------------------------------------------

    def delete(self, obj):
        api_version, kind, name = obj['apiVersion'], obj['kind'], obj['metadata']['name']
        namespace = obj['metadata'].get('namespace')
        where = describe(kind, namespace, name)
        resource = self._find(api_version, kind, where)
        if resource is None:
            # A kind the server does not serve (any more) has no objects to delete.
            self._record(api_version, kind, namespace, name, 'absent')
            return
        namespace = self._place(resource, obj)
        live = self._get(resource, namespace, name, describe(kind, namespace, name))
        self._delete_live(resource, namespace, name, live)

    def delete_selected(self, selector, kinds):
        """Delete every object of ``kinds`` (dicts with apiVersion and kind) that matches ``selector``."""
        for entry in kinds:
            api_version, kind = entry['apiVersion'], entry['kind']
            where = '%s (%s) with labels %s' % (kind, api_version, selector)
            resource = self._find(api_version, kind, where)
            if resource is None:
                continue
            if 'list' not in resource.verbs and resource.verbs:
                raise self._fail('%s: the API server does not allow listing this kind' % where)
            query = {'labelSelector': selector, 'limit': LIST_PAGE}
            items = []
            while True:
                page = self._call(where, 'GET', resource.path(), query=query) or {}
                items.extend(page.get('items') or [])
                token = (page.get('metadata') or {}).get('continue')
                if not token:
                    break
                query = dict(query, **{'continue': token})
            items.sort(key=lambda o: ((o.get('metadata') or {}).get('namespace') or '', o['metadata'].get('name')))
            for live in items:
                live.setdefault('apiVersion', api_version)
                live.setdefault('kind', kind)
                metadata = live.get('metadata') or {}
                if metadata.get('deletionTimestamp'):
                    continue
                self._delete_live(resource, metadata.get('namespace') if resource.namespaced else None,
                                  metadata.get('name'), live)

    def _delete_live(self, resource, namespace, name, live):
        key = (resource.api_version, resource.kind, namespace, name)
        if key in self._seen:
            return
        self._seen.add(key)
        where = describe(resource.kind, namespace, name)
        if live is None or (live.get('metadata') or {}).get('deletionTimestamp'):
            # Gone, or its deletion is already under way: nothing to do but (optionally) wait.
            if live is not None:
                self._deleted.append((resource, namespace, name))
            self._record(resource.api_version, resource.kind, namespace, name, 'absent')
            return
        query = {'dryRun': 'All'} if self.check_mode else None
        body = {'apiVersion': 'v1', 'kind': 'DeleteOptions', 'propagationPolicy': 'Background'}
        answer = self._call(where, 'DELETE', resource.path(name, namespace), query=query, body=body, missing_ok=True)
        if answer is None:
            self._record(resource.api_version, resource.kind, namespace, name, 'absent')
            return
        live.setdefault('apiVersion', resource.api_version)
        live.setdefault('kind', resource.kind)
        self._record(resource.api_version, resource.kind, namespace, name, 'deleted', live, None)
        self._deleted.append((resource, namespace, name))

    # -- waiting -------------------------------------------------------------------------------

    def wait_ready(self):
        """Wait until every applied object is ready by its kind's rules, or fail naming what is not."""
        self._wait(self._present, gone=False)

    def wait_gone(self):
        """Wait until every deleted object has disappeared (finalizers done)."""
        self._wait(self._deleted, gone=True)

    def _wait(self, entries, gone):
        if self.check_mode or not entries:
            return
        deadline = self.clock() + self.wait_timeout
        pending = list(entries)
        while True:
            states = []
            for resource, namespace, name in pending:
                where = describe(resource.kind, namespace, name)
                live = self._get(resource, namespace, name, where)
                if gone:
                    if live is not None:
                        states.append((resource, namespace, name, 'still present (being deleted)'))
                    continue
                if live is None:
                    states.append((resource, namespace, name, 'not found'))
                    continue
                live.setdefault('apiVersion', resource.api_version)
                live.setdefault('kind', resource.kind)
                ready, state, failure = readiness(live)
                if failure:
                    raise self._fail('%s: %s' % (where, failure))
                if not ready:
                    states.append((resource, namespace, name, state))
            if not states:
                return
            pending = [s[:3] for s in states]
            if self.clock() >= deadline:
                raise self._fail('; '.join('%s: %s after %d s' % (describe(r.kind, ns, n), state, self.wait_timeout)
                                           for r, ns, n, state in states))
            self.sleep(min(POLL_INTERVAL, max(0.0, deadline - self.clock())))


def run(client, definitions=None, state='present', selector=None, kinds=None, labels=None, wait=False, **options):
    """Do what the module was asked; return (result dict, warnings). Raises ManifestError."""
    objects = prepare(definitions, labels if state == 'present' else None)
    manifest = Manifest(client, **options)
    if state == 'present':
        for obj in objects:
            manifest.apply(obj)
        if wait:
            manifest.wait_ready()
    else:
        for obj in objects:
            manifest.delete(obj)
        if selector:
            manifest.delete_selected(selector, kinds or [])
        if wait:
            manifest.wait_gone()
    return manifest.result(), manifest.warnings + list(client.warnings)
