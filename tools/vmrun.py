#!/usr/bin/env python3
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

"""Run a shell command as root in a throw-away QEMU VM with real LIO.

The VM boots the Debian kernel prepared by tools/vm-setup.sh (as an
uncompressed vmlinux, PVH entry) with a small busybox initramfs. The host's
``/`` is mounted read-only over virtio-9p under a tmpfs overlay, so the guest
sees every host file (venvs, the checkout, qemu itself) and may write
anywhere; writes vanish at power-off except in ``--share`` directories.
Like a normal host it has configfs on /sys/kernel/config, tmpfs /run and
/dev/shm, devpts and /lib/modules/$KVER; ``modprobe kvm_amd`` gives a
/dev/kvm for nested guests (TCG emulates AMD SVM).

Usage::

    python3 tools/vmrun.py [--kernel-dir DIR] [--mem 1G] [--smp 2]
        [--timeout SECONDS] [--share DIR]... [--env NAME=VALUE]...
        [--accel auto|tcg|kvm] [--tcg-stats] 'shell command'
    python3 tools/vmrun.py extract-vmlinux VMLINUZ VMLINUX

The exit status is the command's, 124 on timeout, 255 if the guest died
without reporting one and 2 for harness errors (missing kernel or qemu).

``build_initramfs()`` is reusable, e.g. for nested guests in tests.
"""

import argparse
import hashlib
import lzma
import os
import re
import select
import shlex
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time

DEFAULT_KERNEL_DIR = os.environ.get('VHOST_BRICK_VM_DIR',
                                    '/var/cache/vhost-brick-vm')
# Kernel series tools/vm-setup.sh prepares; the first is the default.
KERNEL_SERIES = ('6.1', '6.12')
BUSYBOX = '/bin/busybox'
QEMU = 'qemu-system-x86_64'
GUEST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
MOUNT_9P = 'trans=virtio,version=9p2000.L,msize=512000'

# PID 1 of the outer VM. switch_root (not chroot): the kernel's own
# request_module() runs /sbin/modprobe in PID 1's root, which must be the
# host tree for in-kernel module autoloading (e.g. target_core_iblock).
OUTER_INIT = """#!/bin/sh
fail() { echo "vmrun init: $*"; poweroff -f; }
mount -t proc proc /proc && mount -t sysfs sysfs /sys &&
    mount -t devtmpfs devtmpfs /dev || fail "cannot mount proc/sys/dev"
modprobe -a virtio_pci 9pnet_virtio 9p overlay || fail "cannot load modules"
mkdir -p /lower /rw /newroot
mount -t 9p -o %s,ro,cache=loose hostroot /lower ||
    fail "cannot mount the host root"
mount -t tmpfs -o mode=755 rw /rw && mkdir /rw/upper /rw/work &&
    mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work \\
        overlay /newroot || fail "cannot mount the overlay"
mount -t tmpfs -o mode=755,nosuid,nodev run /newroot/run &&
    cp "/lower$vmrun_dir/stage2.sh" /newroot/run/vmrun-stage2.sh ||
    fail "cannot copy stage 2 from $vmrun_dir"
for d in proc sys dev; do mount --move /$d /newroot/$d; done
exec switch_root /newroot /bin/sh /run/vmrun-stage2.sh
""" % MOUNT_9P
OUTER_MODULES = ('virtio_pci', '9pnet_virtio', '9p', 'overlay')


class VMError(Exception):
    """The VM cannot be started (kernel, qemu or initramfs problem)."""


def _unxz(payload):
    try:
        return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(payload)
    except lzma.LZMAError:
        return b''


def _unzstd(payload):
    """zstd's first frame; the bytes after it make zstd exit non-zero."""
    return subprocess.run(['zstd', '-dc'], input=payload,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL).stdout


# How Debian compresses its kernels: xz up to 6.1, zstd in 6.12.
_COMPRESSIONS = ((b'\xfd7zXZ\x00', _unxz), (b'\x28\xb5\x2f\xfd', _unzstd))


def extract_vmlinux(vmlinuz, vmlinux):
    """Write the ELF kernel found xz- or zstd-compressed inside a bzImage.

    QEMU boots the ELF directly through its PVH note, ~4 s faster under TCG
    than letting the bzImage decompress itself (linux scripts/extract-vmlinux
    does the same).
    """
    with open(vmlinuz, 'rb') as f:
        data = f.read()
    for magic, decompress in _COMPRESSIONS:
        pos = data.find(magic)
        while pos >= 0:
            elf = decompress(data[pos:])
            if elf.startswith(b'\x7fELF'):
                _write_atomically(vmlinux, elf)
                return
            pos = data.find(magic, pos + 1)
    raise VMError('%s: no xz- or zstd-compressed ELF kernel inside'
                  % vmlinuz)


def series_dir(series):
    """Where tools/vm-setup.sh prepares the kernel of a series."""
    if series == KERNEL_SERIES[0]:
        return DEFAULT_KERNEL_DIR
    return os.path.join(DEFAULT_KERNEL_DIR, 'kernel-' + series)


def kernel_version(kernel_dir=DEFAULT_KERNEL_DIR):
    """Return the version of the kernel prepared in kernel_dir."""
    try:
        with open(os.path.join(kernel_dir, 'kernel-version')) as f:
            return f.read().strip()
    except FileNotFoundError:
        raise VMError('%s has no prepared kernel: run tools/vm-setup.sh first'
                      % kernel_dir) from None


def _modules_dir(kernel_dir, kver):
    return os.path.join(kernel_dir, 'kroot', 'lib', 'modules', kver)


def _module_name(path):
    return os.path.basename(path).split('.ko')[0].replace('-', '_')


def resolve_modules(kernel_dir, names):
    """Return modules.dep lines for names plus dependencies, deps first.

    Built-in modules are skipped; an unknown name raises VMError.
    """
    moddir = _modules_dir(kernel_dir, kernel_version(kernel_dir))
    deps = {}
    with open(os.path.join(moddir, 'modules.dep')) as f:
        for line in f:
            path, _, needs = line.partition(':')
            deps[_module_name(path)] = (path, needs.split())
    with open(os.path.join(moddir, 'modules.builtin')) as f:
        builtin = {_module_name(path) for path in f.read().split()}
    lines = []

    def visit(name):
        name = name.replace('-', '_')
        if name in builtin:
            return
        if name not in deps:
            raise VMError('module %s not found in %s' % (name, moddir))
        path, needs = deps[name]
        for dep in needs:
            visit(_module_name(dep))
        line = '%s: %s' % (path, ' '.join(needs))
        if line not in lines:
            lines.append(line)

    for name in names:
        visit(name)
    return lines


def build_initramfs(kernel_dir, modules, init_script, dest_dir=None):
    """Write a busybox initramfs for the prepared kernel; return its path.

    The uncompressed newc archive holds the host's busybox-static as
    /bin/busybox with all its applet links (/bin/sh, modprobe, dd, ...),
    /dev/console, the named modules plus their dependencies under
    /lib/modules/$KVER with a matching modules.dep (so ``modprobe NAME``
    works in init) and init_script as /init (run as PID 1; start it with
    ``#!/bin/sh``). The file is cached in dest_dir (default kernel_dir),
    named by kernel version and a hash of its contents.
    """
    kver = kernel_version(kernel_dir)
    moddir = _modules_dir(kernel_dir, kver)
    if not os.path.exists(BUSYBOX):
        raise VMError('%s missing: run tools/vm-setup.sh first' % BUSYBOX)
    dep_lines = resolve_modules(kernel_dir, modules)
    applets = subprocess.run([BUSYBOX, '--list-full'], check=True,
                             capture_output=True, text=True).stdout.split()
    with open(BUSYBOX, 'rb') as f:
        files = {'bin/busybox': (0o100755, f.read()),
                 'init': (0o100755, init_script.encode())}
    for line in dep_lines:
        path = line.split(':')[0]
        with open(os.path.join(moddir, path), 'rb') as f:
            files['lib/modules/%s/%s' % (kver, path)] = (0o100644, f.read())
    files['lib/modules/%s/modules.dep' % kver] = (
        0o100644, ''.join(line + '\n' for line in dep_lines).encode())
    # So that modprobe of a module built into this kernel succeeds
    # (virtio_pci is one from 6.12 on).
    with open(os.path.join(moddir, 'modules.builtin'), 'rb') as f:
        files['lib/modules/%s/modules.builtin' % kver] = (0o100644, f.read())
    for applet in applets:
        files.setdefault(applet.lstrip('/'), (0o120777, b'/bin/busybox'))

    digest = hashlib.sha256(kver.encode())
    for name in sorted(files):
        digest.update(b'%s\0%o\0%s\0' % (name.encode(), *files[name]))
    path = os.path.join(dest_dir or kernel_dir, 'initramfs-%s-%s.cpio'
                        % (kver, digest.hexdigest()[:16]))
    if not os.path.exists(path):
        _write_atomically(path, _cpio(files))
    return path


def _cpio(files):
    """Return a newc cpio archive of {name: (mode, data)}.

    Adds the parent directories (first, as the kernel's unpacker needs
    them), the usual mount points and /dev/console.
    """
    dirs = {'dev', 'proc', 'sys', 'tmp', 'run', 'root', 'mnt'}
    for name in files:
        while '/' in name:
            name = os.path.dirname(name)
            dirs.add(name)
    entries = [(d, 0o040755, b'', (0, 0)) for d in sorted(dirs)]
    entries += [(n, mode, data, (0, 0))
                for n, (mode, data) in sorted(files.items())]
    entries.append(('dev/console', stat.S_IFCHR | 0o600, b'', (5, 1)))
    entries.append(('TRAILER!!!', 0, b'', (0, 0)))
    out = bytearray()
    for ino, (name, mode, data, rdev) in enumerate(entries, 1):
        name = name.encode() + b'\0'
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, *rdev, len(name), 0)
        out += b'070701' + b''.join(b'%08X' % v for v in fields) + name
        out += b'\0' * (-len(out) % 4) + data
        out += b'\0' * (-len(out) % 4)
    return bytes(out)


def _write_atomically(path, data):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or '.')
    with os.fdopen(fd, 'wb') as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _kvm_usable():
    """Whether /dev/kvm is hardware KVM (kvm_intel or kvm_amd).

    A /dev/kvm from kvm_pvm is not enough: it only runs PVM-patched guest
    kernels, a stock Debian kernel crawls there (slower than TCG).
    """
    return os.access('/dev/kvm', os.R_OK | os.W_OK) and any(
        os.path.isdir('/sys/module/' + m) for m in ('kvm_intel', 'kvm_amd'))


def _stage2(kernel_dir, kver, shares, env, cwd, command, marker):
    """Return the script PID 1 runs after switch_root (host's /bin/sh)."""
    q = shlex.quote
    lines = [
        'set -e',
        "trap 'echo vmrun: guest setup failed; /bin/busybox poweroff -f' EXIT",
        'stty -opost',  # pass output through unchanged (no \n -> \r\n)
        'mkdir -p /dev/pts /dev/shm /lib/modules',
        'mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts',
        'mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm',
        'mount -t tmpfs -o mode=755 tmpfs /lib/modules',
        'ln -s %s /lib/modules/%s' % (q(_modules_dir(kernel_dir, kver)),
                                      q(kver)),
        # what systemd does on a normal host: configfs at /sys/kernel/config
        'modprobe configfs',
        'mount -t configfs configfs /sys/kernel/config',
    ]
    for i, path in enumerate(shares):
        lines += ['mkdir -p ' + q(path),
                  'mount -t 9p -o %s share%d %s' % (MOUNT_9P, i, q(path))]
    lines += ['export %s=%s' % (name, q(value)) for name, value in env]
    lines += ['set +e',
              'trap - EXIT',
              'cd %s && /bin/sh -c %s </dev/null' % (q(cwd), q(command)),
              'rc=$?',
              'sync',
              'echo "%s$rc@@"' % marker,
              '/bin/busybox poweroff -f']
    return '\n'.join(lines) + '\n'


def _stream(proc, marker, deadline, out):
    """Copy the console to out until marker; return the status after it.

    Returns None if the console closed first; raises TimeoutError at the
    deadline.
    """
    fd = proc.stdout.fileno()
    pending = b''
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            out.write(pending)
            return None
        pending += chunk
        while b'\n' in pending:
            line, _, pending = pending.partition(b'\n')
            head, hit, tail = line.partition(marker)
            if hit:
                out.write(head)
                out.flush()
                return int(tail.split(b'@')[0])
            out.write(line + b'\n')
        out.flush()


def _tcg_flushes(monitor):
    """TCG's count of translated-code cache flushes; None if unknown.

    A full cache is flushed whole, and all code then runs translated
    anew: whatever is timed just after pays for it. Asked of QEMU's
    human monitor at monitor (a Unix socket) with ``info jit``.
    """
    found = None
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            sock.connect(monitor)
            sock.sendall(b'info jit\n')
            reply = b''
            while found is None:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
                found = re.search(rb'TB flush count\s+(\d+)\s', reply)
    except OSError:
        return None
    return found and int(found.group(1))


def run(command, kernel_dir=DEFAULT_KERNEL_DIR, mem='1G', smp=2,
        timeout=600, shares=(), env=(), accel='auto', out=None,
        tcg_stats=False, qemu_args=(), kernel_args=''):
    """Boot a VM, run command there as root, return its exit status.

    shares are host directories mounted read-write at the same path; env
    is a sequence of (name, value) exported in addition to PATH (the
    host's, then the usual sbin/bin dirs) and HOME=/root. The command
    runs with /bin/sh -c in the caller's working directory; its stdout
    and stderr go to out (default: our stdout). Returns 124 on timeout
    and 255 if the guest died without reporting a status. accel 'auto'
    picks KVM only on hardware KVM (untested; TCG everywhere else).
    tcg_stats adds to out, under TCG, how often the translated-code
    cache was flushed while the command ran. qemu_args are added to
    QEMU's command line (devices), kernel_args to the kernel's.
    """
    kver = kernel_version(kernel_dir)
    vmlinux = os.path.join(kernel_dir, 'kroot', 'boot', 'vmlinux-' + kver)
    if not os.path.exists(vmlinux):
        raise VMError('%s missing: run tools/vm-setup.sh first' % vmlinux)
    qemu = shutil.which(QEMU)
    if not qemu:
        raise VMError('%s not found: run tools/vm-setup.sh first (it installs'
                      ' qemu-system-x86)' % QEMU)
    shares = [os.path.abspath(s) for s in shares]
    for share in shares:
        if not os.path.isdir(share):
            raise VMError('--share %s: not a directory' % share)
    if accel == 'auto':
        accel = 'kvm' if _kvm_usable() else 'tcg'
    initrd = build_initramfs(kernel_dir, OUTER_MODULES, OUTER_INIT)
    path = os.environ.get('PATH', '').split(':') + GUEST_PATH.split(':')
    path = ':'.join(p for p in dict.fromkeys(path) if p)
    env = [('PATH', path), ('HOME', '/root')] + list(env)
    marker = '@@VMRUN-RC-%s=' % os.urandom(8).hex()
    out = out or sys.stdout.buffer

    run_dir = tempfile.mkdtemp(prefix='vmrun-')
    try:
        with open(os.path.join(run_dir, 'stage2.sh'), 'w') as f:
            f.write(_stage2(kernel_dir, kver, shares, env, os.getcwd(),
                            command, marker))
        # kvm_amd.vgif=0 (modprobe applies it): with TCG's emulated vGIF,
        # nested KVM guests wedged this 2-vCPU VM in 4 of 27 runs (0 of 36
        # without vGIF). Rarer wedges remain (twice in full functional
        # runs), so the functional tests boot their nested guest with TCG.
        # norandmaps: TCG finds translated code by virtual address, so with
        # randomised address spaces every new process (each helper,
        # rootwrap, pytest's children) had its code translated anew; the
        # 1 GiB code cache filled every ~2 min and each flush of it slowed
        # whatever ran next (a privsep create from 0.07 s to 0.25 s). A
        # throw-away guest loses nothing by it; four functional test files
        # ran in 300 s instead of 415 s.
        cmd = [qemu, '-machine', 'pc', '-m', mem, '-smp', str(smp),
               '-nodefaults', '-no-user-config', '-display', 'none',
               '-no-reboot', '-serial', 'stdio',
               '-kernel', vmlinux, '-initrd', initrd,
               '-append', 'console=ttyS0 panic=-1 mitigations=off quiet '
               'loglevel=1 tsc=unstable kvm_amd.vgif=0 norandmaps '
               'vmrun_dir=%s %s' % (run_dir, kernel_args),
               '-fsdev', 'local,id=hostroot,path=/,security_model=none,'
               'readonly=on,multidevs=remap',
               '-device', 'virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot']
        cmd += (['-accel', 'kvm', '-cpu', 'host,-arch-capabilities']
                if accel == 'kvm' else
                ['-accel', 'tcg,thread=multi', '-cpu', 'max'])
        for i, share in enumerate(shares):
            cmd += ['-fsdev', 'local,id=share%d,path=%s,security_model=none,'
                    'multidevs=remap' % (i, share.replace(',', ',,')),
                    '-device', 'virtio-9p-pci,fsdev=share%d,mount_tag=share%d'
                    % (i, i)]
        cmd += list(qemu_args)
        monitor = (os.path.join(run_dir, 'monitor')
                   if tcg_stats and accel == 'tcg' else None)
        if monitor:
            cmd += ['-monitor', 'unix:%s,server=on,wait=off' % monitor]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE)
        try:
            rc = _stream(proc, marker.encode(), time.monotonic() + timeout,
                         out)
            if rc is not None and monitor:
                flushes = _tcg_flushes(monitor)
                out.write(b'vmrun: TCG code-cache flushes in this VM: %s\n'
                          % (b'unknown' if flushes is None
                             else str(flushes).encode()))
                out.flush()
            if rc is not None:
                proc.communicate(timeout=30)  # poweroff; drain the console
        except TimeoutError:
            sys.stderr.write('vmrun: timed out after %gs\n' % timeout)
            rc = 124
        except subprocess.TimeoutExpired:
            pass  # status reported, guest did not power off: kill it
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if rc is None:
        sys.stderr.write('vmrun: the guest died without reporting a status\n')
        return 255
    return rc


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ['extract-vmlinux'] and len(argv) == 3:
            extract_vmlinux(argv[1], argv[2])
            return 0
        parser = argparse.ArgumentParser(
            description='Run a shell command as root in a throw-away VM.')
        kernel = parser.add_mutually_exclusive_group()
        kernel.add_argument('--kernel', choices=KERNEL_SERIES,
                            help='a kernel series tools/vm-setup.sh '
                                 'prepared (default %s)' % KERNEL_SERIES[0])
        kernel.add_argument('--kernel-dir', help='a kernel tree prepared '
                            'as tools/vm-setup.sh does')
        parser.add_argument('--mem', default='1G')
        parser.add_argument('--smp', type=int, default=2)
        parser.add_argument('--timeout', type=float, default=600)
        parser.add_argument('--share', action='append', default=[],
                            metavar='DIR', help='mount read-write, same path')
        parser.add_argument('--env', action='append', default=[],
                            metavar='NAME=VALUE')
        parser.add_argument('--accel', choices=('auto', 'tcg', 'kvm'),
                            default='auto')
        parser.add_argument('--tcg-stats', action='store_true',
                            help='report TCG code-cache flushes at the end')
        parser.add_argument('command')
        args = parser.parse_args(argv)
        env = [e.split('=', 1) for e in args.env]
        if any(len(e) != 2 or not e[0].isidentifier() for e in env):
            parser.error('--env wants NAME=VALUE')
        return run(args.command,
                   args.kernel_dir or series_dir(args.kernel or
                                                 KERNEL_SERIES[0]),
                   args.mem, args.smp,
                   args.timeout, args.share, env, args.accel,
                   tcg_stats=args.tcg_stats)
    except (VMError, OSError, subprocess.SubprocessError) as err:
        sys.stderr.write('vmrun: error: %s\n' % err)
        return 2


if __name__ == '__main__':
    sys.exit(main())
