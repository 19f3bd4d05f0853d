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
#   $FDBROKER_TEST_WRITABLE_ROOT=1  / becomes an overlayfs: the machine's root file
#                      system as its (never written) lower layer, upper and work
#                      dirs on a private tmpfs; the upper layer is bound
#                      read-only at /.fdbroker-test-upper (see step W)
set -eu

stage=$1
shift

# 0. The PID namespace's own /proc, with the machine's detached rather than left
#    underneath: systemd's per-service mount namespaces (ProtectSystem= etc.)
#    go wrong on such stacked mounts (it remounts by path). Same for /dev below.
umount -l /proc
mount -t proc -o nosuid,nodev,noexec proc /proc

# W. A writable root, on request (e.g. for dpkg): an overlayfs whose lower layer
#    is the machine's root file system (overlayfs never writes its lower layer,
#    and a lower layer is only ever one file system: none of the machine's other
#    mounts comes along) and whose upper and work dirs are on a tmpfs of this
#    namespace, which dies with it. The boot moves into it (pivot_root; the
#    machine's root is detached) carrying across what the steps below need:
#    /proc (fresh, step 0), /dev and /sys (their own steps replace or trim
#    them), and the stage and $FDBROKER_TEST_KEEP directories where they are
#    not on the root file system (on it, the lower layer shows them already).
#    The upper layer is bound read-only at /.fdbroker-test-upper, so that the
#    harness can list what the boot created, changed or deleted (whiteouts).
upper_at=/.fdbroker-test-upper
if [ "${FDBROKER_TEST_WRITABLE_ROOT:-}" = 1 ]; then
  # /run is about to be replaced (step 1), in the new root as well: a free place.
  mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
  mkdir /run/.upper /run/.work /run/.root
  # The mount point of the upper layer's own bind: the one entry the upper
  # layer holds before the boot starts.
  mkdir -m 0755 "/run/.upper$upper_at"
  mount -t overlay -o lowerdir=/,upperdir=/run/.upper,workdir=/run/.work \
    fdbroker-test-root /run/.root
  mount --move /proc /run/.root/proc
  mount --rbind /dev /run/.root/dev
  mount --rbind /sys /run/.root/sys
  root_dev=$(stat -c %d /)
  for dir in "$stage" $(echo "${FDBROKER_TEST_KEEP:-}" | tr ':' ' '); do
    if [ "$(stat -c %d "$dir")" != "$root_dev" ]; then
      mkdir -p "/run/.root$dir"
      mount --rbind "$dir" "/run/.root$dir"
    fi
  done
  mount --bind "/run/.upper" "/run/.root$upper_at"
  mount -o remount,bind,ro "/run/.root$upper_at"
  # pivot_root with new and old root the same directory stacks the old root
  # on top of the new one, so that no directory for it has to be made (which
  # would land in the upper layer); the lazy umount then detaches it, and with
  # it every machine mount not carried across above.
  cd /run/.root
  pivot_root . .
  umount -l .
  cd /
  # An image built from Docker's ships a policy-rc.d that denies (exit 101) every
  # start a package's maintainer scripts ask for; a booted system has none. Gone
  # from this root only: a whiteout in the upper layer.
  rm -f /usr/sbin/policy-rc.d
fi

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
#    (fs.nr_open, fs.file-max) and would write /etc on a "first boot". A
#    writable root (step W) stays writable: its writes land in the upper layer.
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
mount -o remount,bind,ro /sys
if [ "${FDBROKER_TEST_WRITABLE_ROOT:-}" != 1 ]; then
  mount -o remount,bind,ro /
fi

# `container=` makes systemd take its "kernel command line" from its own argv
# (so systemd.unit= below is honoured) and skip host-only setup.
exec env -i container=fdbroker-test PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  /lib/systemd/systemd "$@"
