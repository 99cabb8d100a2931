#!/bin/bash
# shellcheck shell=bash
#
# Test-only dracut module for the VM test: installs the reporter and runs it once drivers
# have loaded, then the reporter powers the machine off. Never shipped.
#   non-systemd images: an initqueue/settled hook (after udev's coldplug has settled);
#   systemd images: a unit after systemd-udev-trigger that waits for udev to settle.
# The xtask copies the built reporter into this directory as vfio-test-report.

# moddir, initdir, systemdsystemunitdir and SYSTEMCTL are set by dracut.
# shellcheck disable=SC2154

# called by dracut
check() {
    return 255
}

# called by dracut
depends() {
    return 0
}

# called by dracut
install() {
    inst_simple "$moddir/vfio-test-report" /usr/bin/vfio-test-report
    chmod 755 "$initdir/usr/bin/vfio-test-report"
    inst_multiple udevadm
    if dracut_module_included "systemd"; then
        inst_simple "$moddir/vfio-test-report.service" \
            "$systemdsystemunitdir/vfio-test-report.service"
        "$SYSTEMCTL" -q --root "$initdir" add-wants sysinit.target vfio-test-report.service
    else
        inst_hook initqueue/settled 99 "$moddir/vfio-test-settled.sh"
    fi
}
