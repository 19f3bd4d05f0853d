#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# Runs as PID 1 of a fresh PID/mount/cgroup/UTS/IPC/network namespace (started by
# systemd_harness.py through `unshare`) and turns it into a throwaway machine for
# a real systemd: every mount below is private to this namespace, and it is all
# done BEFORE systemd starts, because systemd (and anything it runs, e.g.
# tmpfiles) would otherwise act on the machine's real /tmp, /run, /dev and /etc.
#
# Usage: boot_inside.sh STAGE_DIR [systemd arguments...]
#   STAGE_DIR/run/     copied to /run: unit files in run/systemd/system, test configs
#   $FDBROKER_TEST_CONSOLE  a pty the harness reads, bound over /dev/console:
#                      systemd logs there until journald runs (it insists on a tty)
#   STAGE_DIR/overlay/PATH  bound read-only over /PATH, which must exist
#                      (e.g. an /etc/group with the group a unit names)
set -eu

stage=$1
shift

# 0. The PID namespace's own /proc, with the machine's detached rather than left
#    underneath: systemd's per-service mount namespaces (ProtectSystem= etc.)
#    go wrong on such stacked mounts (it remounts by path). Same for /dev below.
umount -l /proc
mount -t proc -o nosuid,nodev,noexec proc /proc

# 1. /run first: units and files are copied from the stage directory, which may
#    live in the real /tmp that step 4 hides.
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
cp -R "$stage"/run/. /run/

# 2. A private /dev with only the harmless nodes, and the harness's pty as the
#    console: the real /dev/console is the machine's.
mkdir /run/.dev
mount -t tmpfs -o mode=0755,nosuid tmpfs /run/.dev
for node in null zero full random urandom tty; do
  touch "/run/.dev/$node"
  mount --bind "/dev/$node" "/run/.dev/$node"
done
touch /run/.dev/console
mount --bind "$FDBROKER_TEST_CONSOLE" /run/.dev/console
mkdir /run/.dev/shm /run/.dev/pts
# A devpts instance of our own: PrivateDevices= needs /dev/ptmx and /dev/pts.
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /run/.dev/pts
ln -s pts/ptmx /run/.dev/ptmx
ln -s /proc/self/fd /run/.dev/fd
ln -s /proc/self/fd/0 /run/.dev/stdin
ln -s /proc/self/fd/1 /run/.dev/stdout
ln -s /proc/self/fd/2 /run/.dev/stderr
umount -R -l /dev
mount --move /run/.dev /dev
rmdir /run/.dev

# 3. Replacement files, bound (never copied) over the machine's; before step
#    4, which may hide the stage directory.
if [ -d "$stage/overlay" ]; then
  (cd "$stage/overlay" && find . -type f) | while read -r file; do
    target=${file#.}
    mount --bind "$stage/overlay$target" "$target"
    mount -o remount,bind,ro "$target"
  done
fi

# 4. The directories systemd's tmpfiles rules and PrivateTmp= clean or create.
#    The project's own directories under them ($FDBROKER_TEST_KEEP, colon-separated:
#    e.g. a CI clone in /tmp) are held aside and moved back on top of the tmpfs.
keep=${FDBROKER_TEST_KEEP:-}
mkdir -p /run/.keep
n=0
for dir in $(echo "$keep" | tr ':' ' '); do
  n=$((n + 1))
  mkdir /run/.keep/$n
  mount --bind "$dir" /run/.keep/$n
done
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
n=0
for dir in $(echo "$keep" | tr ':' ' '); do
  n=$((n + 1))
  mkdir -p "$dir"
  mount --move /run/.keep/$n "$dir"
done
rmdir /run/.keep/* /run/.keep 2>/dev/null || true
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /var/lib/systemd
if [ -d /var/log/journal ]; then
  # journald would otherwise write persistent journals into the machine's /var/log.
  mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /var/log/journal
fi

# 5. Our own cgroup2 tree: in the new cgroup namespace its root is the cgroup the
#    harness created for this boot, so systemd's slices and scopes live under it.
#    The machine's own cgroup mounts go first: left underneath, they would
#    resurface (writable) in the services' mount namespaces.
umount -R /sys/fs/cgroup
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup

# 6. Nothing else of the machine may be written: systemd as PID 1 bumps sysctls
#    (fs.nr_open, fs.file-max) and would write /etc on a "first boot".
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount -o remount,bind,ro /sys
mount -o remount,bind,ro /

# `container=` makes systemd take its "kernel command line" from its own argv
# (so systemd.unit= below is honoured) and skip host-only setup.
exec env -i container=fdbroker-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  /lib/systemd/systemd "$@"
