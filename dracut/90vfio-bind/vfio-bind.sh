#!/bin/sh
# shellcheck shell=sh
#
# dracut cmdline hook (priority 00) for vfio-bind, in images without systemd: dracut's
# /init sources it after mounting /proc, /sys and /dev, before rd.driver.pre= modules load
# (priority 01) and before udev starts. systemd-based images run the unit instead.
#
# Sourced by /init: it must never `exit` or `return` from the sourcing shell, and leaves
# nothing behind but unset variables. A missing binary or a failing run is reported (kernel
# log, else console) and the boot goes on.
#
# VFIO_BIND_ROOT (unset at boot) is put in front of every path, so tests can run this hook
# against a fake binder and /dev/kmsg.

_vfio_bind_root="${VFIO_BIND_ROOT:-}"
_vfio_bind_status=0
_vfio_bind_message=''

# The escape hatch, rd.vfio_bind=0, is the binder's to decide (it reads the command line and
# /etc/cmdline.d as the kernel parses them, logs one line and exits 0), the same way under
# every init.
if [ ! -x "$_vfio_bind_root/usr/bin/vfio-bind" ]; then
    _vfio_bind_message='<3>vfio-bind: /usr/bin/vfio-bind is missing from the initramfs; nothing was bound (rebuild the image)'
else
    "$_vfio_bind_root/usr/bin/vfio-bind" apply || _vfio_bind_status=$?
    if [ "$_vfio_bind_status" -ne 0 ]; then
        _vfio_bind_message="<3>vfio-bind: 'vfio-bind apply' exited with status $_vfio_bind_status; boot continues"
    fi
fi

# One write, one kernel record; the console if the kernel log cannot be written.
if [ -n "$_vfio_bind_message" ]; then
    { printf '%s\n' "$_vfio_bind_message" >"$_vfio_bind_root/dev/kmsg"; } 2>/dev/null ||
        printf '%s\n' "${_vfio_bind_message#<?>}" >&2
fi

unset _vfio_bind_root _vfio_bind_status _vfio_bind_message
