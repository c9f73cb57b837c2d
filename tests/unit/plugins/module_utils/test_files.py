# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""module_utils/files.py: the one write path (stage, fsync, rename) and the batch planner."""

from __future__ import annotations

import os
import stat

import pytest

from ansible_collections.kubeforge.cluster.plugins.module_utils import files


def leftovers(directory):
    return [name for name in os.listdir(directory) if name.startswith(files.TEMP_PREFIX)]


def test_write_atomic_creates_directory_and_mode(tmp_path):
    path = tmp_path / 'a' / 'b' / 'state.json'
    files.write_atomic(str(path), 'one\n')
    assert path.read_text() == 'one\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    files.write_atomic(str(path), b'two\n', mode=0o600)
    assert path.read_bytes() == b'two\n'
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert leftovers(str(path.parent)) == []


def test_stage_removes_its_file_when_the_source_fails(tmp_path):
    def chunks():
        yield b'part'
        raise ConnectionError('reset by peer')

    with pytest.raises(ConnectionError):
        files.stage(str(tmp_path), chunks())
    assert leftovers(str(tmp_path)) == []


def test_replace_cleans_up_when_the_move_fails(tmp_path):
    tmp = files.stage(str(tmp_path), [b'x'])

    def refuse(src, dest):
        raise OSError('read-only file system')

    with pytest.raises(OSError):
        files.replace(tmp, str(tmp_path / 'dest'), refuse)
    assert leftovers(str(tmp_path)) == []


def test_atomic_writer_replaces_only_when_the_block_ends_well(tmp_path):
    path = tmp_path / 'images' / 'pause.tar'
    with files.atomic_writer(str(path)) as out:
        out.write(b'first')
        assert not path.exists()
    assert path.read_bytes() == b'first'
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    with pytest.raises(ValueError):
        with files.atomic_writer(str(path)) as out:
            out.write(b'half')
            raise ValueError('source ended early')
    assert path.read_bytes() == b'first'
    assert leftovers(str(path.parent)) == []


def test_read_file_treats_empty_as_absent_and_names_directories(tmp_path):
    assert files.read_file(str(tmp_path / 'missing')) is None
    (tmp_path / 'empty').write_bytes(b'')
    assert files.read_file(str(tmp_path / 'empty')) is None
    with pytest.raises(files.FileError, match='is a directory'):
        files.read_file(str(tmp_path))


def test_plan_all_reports_repeats_and_every_error_before_any_write():
    entries = [{'dest': '/a'}, {'dest': '/b'}, {'dest': '/a'}]
    with pytest.raises(files.FileError, match='kubeconfigs: each dest may appear once; repeated: /a'):
        files.plan_all('kubeconfigs', 'dest', entries, lambda entry: (files.Plan(), None))
    entries = [{'path': '/a'}, {'path': '/b'}, {'path': '/c'}]
    with pytest.raises(files.FileError) as err:
        files.plan_all('keys', 'path', entries,
                       lambda entry: (None, 'bad %s' % entry['path']) if entry['path'] != '/b' else (files.Plan(), None))
    assert str(err.value) == 'bad /a; bad /c'
    plans = files.plan_all('keys', 'path', entries[:2], lambda entry: (files.Plan(), None))
    assert len(plans) == 2 and not any(plan.changed for plan in plans)
