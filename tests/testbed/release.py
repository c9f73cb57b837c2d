# Copyright: kubeforge.cluster contributors
# Apache License 2.0 (see LICENSE)
"""Release files as upstream publishes them: reproducible archives, copies, checksum files."""

import glob
import gzip
import os
import shutil
import tarfile

from .common import atomic_write, run
from .manifest import checksum_line, max_glibc, sha256_file


def write_tar_gz(destination, entries):
    """Reproducible tar.gz: entries are (arcname, source file or None for a directory, mode, mtime)."""
    partial = destination + ".partial"
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    with open(partial, "wb") as raw:
        with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0, compresslevel=6) as compressed:
            with tarfile.open(fileobj=compressed, mode="w", format=tarfile.GNU_FORMAT) as archive:
                for arcname, source, mode, mtime in entries:
                    info = tarfile.TarInfo(arcname)
                    info.mode = mode
                    info.uid = info.gid = 0
                    info.uname = info.gname = "root"
                    info.mtime = int(mtime)
                    if source is None:
                        info.type = tarfile.DIRTYPE
                        archive.addfile(info)
                    else:
                        info.size = os.path.getsize(source)
                        with open(source, "rb") as handle:
                            archive.addfile(info, handle)
    os.replace(partial, destination)


def copy_file(source, destination, mode=0o755):
    partial = destination + ".partial"
    os.makedirs(os.path.dirname(destination), exist_ok=True)
    shutil.copyfile(source, partial)
    os.chmod(partial, mode)
    os.replace(partial, destination)


def binary_glibc(path):
    proc = run(["objdump", "-T", path], check=False)
    return max_glibc(proc.stdout) if proc.returncode == 0 else None


def write_checksums(path):
    """``<file>.sha256`` beside the artifact; for etcd also the release directory's SHA256SUMS."""
    digest = sha256_file(path)
    directory, filename = os.path.split(path)
    atomic_write(path + ".sha256", checksum_line(digest, filename))
    if "/etcd-io/etcd/releases/download/" in path:
        lines = []
        for other in sorted(glob.glob(os.path.join(directory, "*.tar.gz"))):
            lines.append(checksum_line(digest if other == path else sha256_file(other), os.path.basename(other)))
        atomic_write(os.path.join(directory, "SHA256SUMS"), "".join(lines))
    return digest
