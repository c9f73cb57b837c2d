# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""The one way the collection reads and writes files.

Every file a module, action or callback of this collection writes goes through ``stage`` and
``replace`` (or ``atomic_writer`` for content written in pieces): a temporary file beside the destination, flushed and fsynced, then renamed over it,
so a reader (or a crash) never sees half a file. Modules write through ``write_file`` or
``apply_plan``, which use ``module.atomic_move`` so that owner, group, mode and SELinux context
follow Ansible's rules; controller-side code, which has no module, uses ``write_atomic``.

``Plan`` is what a module's logic returns after comparing the disk with what was asked: the
files to write and why. ``plan_all`` runs such a comparison for every entry of a batch before
anything is written, so one bad entry leaves every file as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

SECRET_MODE = 0o600
TEMP_PREFIX = '.kubeforge-'


class FileError(Exception):
    """A file that cannot be read or written, with the path and the reason."""


def read_file(path):
    """The bytes of ``path``, or None when it does not exist or is empty.

    An empty file counts as absent: it is what an interrupted first write leaves behind.
    """
    try:
        with open(path, 'rb') as handle:
            return handle.read() or None
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise FileError('%s is a directory, not a file' % path)
    except OSError as exc:
        raise FileError('cannot read %s: %s' % (path, exc.strerror or exc))


def unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def stage(directory, chunks, mode=None, suffix=''):
    """Write ``chunks`` (an iterable of bytes) to a new temporary file in ``directory``.

    The file is flushed and fsynced before this returns its path; ``mode`` (an int) is set on it
    when given. On any error, including one raised by ``chunks`` itself, the temporary file is
    removed and the error passes on.
    """
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=suffix)
    try:
        with os.fdopen(handle, 'wb') as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
    except BaseException:
        unlink_quietly(tmp)
        raise
    return tmp


def replace(tmp, path, mover=None):
    """Rename the staged ``tmp`` over ``path`` (``mover(tmp, path)`` when given, e.g. atomic_move)."""
    try:
        (mover or os.replace)(tmp, path)
    finally:
        if os.path.exists(tmp):
            unlink_quietly(tmp)


@contextlib.contextmanager
def atomic_writer(path, mode=0o644):
    """A binary file object for content written in pieces (an archive); renamed over ``path``.

    The file is flushed and fsynced when the block ends and only then replaces ``path``; an error
    inside the block leaves ``path`` as it was and removes the temporary file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX)
    try:
        with os.fdopen(handle, 'wb') as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        unlink_quietly(tmp)
        raise
    replace(tmp, path)


def write_atomic(path, content, mode=0o644):
    """Replace ``path`` with ``content`` (bytes or text) in one step; creates its directory."""
    if isinstance(content, str):
        content = content.encode('utf-8')
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    replace(stage(directory, [content], mode), path)


def write_file(module, path, content, secret=False, mode=None):
    """Write ``content`` (bytes) to ``path`` atomically through ``module.atomic_move``.

    A secret is created 0600 from the first byte: the destination is created empty with that
    mode before the move, so no other process can ever read it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    if secret or mode is not None:
        wanted = SECRET_MODE if secret else mode
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, wanted)
        except FileExistsError:
            pass
        else:
            os.close(handle)
        if secret:
            os.chmod(path, SECRET_MODE)
    tmp = stage(directory, [content])
    replace(tmp, path, lambda src, dest: module.atomic_move(
        src, dest, unsafe_writes=module.params.get('unsafe_writes', False)))


class Plan:
    """The outcome of comparing what is on disk with what was asked.

    ``files`` maps a path to the bytes to write there (empty when nothing changes), ``secret``
    names the paths that hold private keys (written 0600).
    """

    def __init__(self):
        self.files = {}
        self.secret = set()
        self.reasons = []
        self.warnings = []
        self.needs_renewal = False
        self.before = None
        self.after = None
        self.result = {}

    @property
    def changed(self):
        return bool(self.files) or self.result.get('_would_change', False)

    @property
    def reason(self):
        return '; '.join(self.reasons)

    def public_result(self):
        return {k: v for k, v in self.result.items() if not k.startswith('_')}


def apply_plan(module, plan, attribute_paths=(), secret_paths=()):
    """Write the plan's files (not in check mode) and apply the common file arguments.

    ``attribute_paths`` get owner/group/mode/... from the module parameters; ``secret_paths`` get
    owner/group but always mode 0600. Returns whether anything changed (or would change).
    """
    changed = plan.changed
    if not module.check_mode:
        for path in sorted(plan.files, key=lambda p: (p not in plan.secret, p)):
            write_file(module, path, plan.files[path], secret=path in plan.secret)
    for path in attribute_paths:
        if os.path.exists(path):
            file_args = module.load_file_common_arguments(module.params, path=path)
            changed = module.set_fs_attributes_if_different(file_args, changed)
    for path in secret_paths:
        if os.path.exists(path):
            file_args = module.load_file_common_arguments(module.params, path=path)
            file_args['mode'] = '0600'
            changed = module.set_fs_attributes_if_different(file_args, changed)
    return changed


def plan_all(option, key, entries, plan_one):
    """Plan every entry of a batch option before any file is written.

    ``plan_one(entry)`` returns ``(plan, error)``. Returns the plans in order, or raises FileError
    naming every problem: a repeated ``key`` (two entries for one file) or the entries' errors.
    """
    names = [entry[key] for entry in entries]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise FileError('%s: each %s may appear once; repeated: %s' % (option, key, ', '.join(twice)))
    plans, errors = [], []
    for entry in entries:
        plan, error = plan_one(entry)
        plans.append(plan)
        if error:
            errors.append(error)
    if errors:
        raise FileError('; '.join(errors))
    return plans
