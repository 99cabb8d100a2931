#!/bin/bash
# shellcheck shell=bash
#
# dracut module for vfio-bind. Included only when asked for:
#     add_dracutmodules+=" vfio-bind "     (in /etc/dracut.conf.d/vfio-bind.conf)
#
# Non-systemd images: a cmdline hook at priority 00 runs the binder before anything else in
# the cmdline stage (rd.driver.pre= modules load at 01) and before udev starts.
# systemd images: dracut-cmdline.service is not ordered against systemd-modules-load, so a
# cmdline hook would race rd.modules-load=; the vfio-bind unit runs before both
# systemd-modules-load and udev instead. Only one of the two is installed.
#
# VFIO_BIND_ROOT (empty by default) is put in front of the three host paths this module
# reads, so an image can be built from a staging tree (`cargo xtask install --destdir DIR`)
# without installing anything on the host:
#   ${VFIO_BIND_ROOT}/usr/bin/vfio-bind                     -> /usr/bin/vfio-bind
#   ${VFIO_BIND_ROOT}/usr/lib/vfio-bind/vfio-bind.service   -> $systemdsystemunitdir/vfio-bind.service
#   ${VFIO_BIND_ROOT}/etc/cmdline.d/vfio-bind.conf (if any) -> /etc/cmdline.d/vfio-bind.conf
# Paths inside the image never change.

# initdir, moddir, systemdsystemunitdir and SYSTEMCTL are set by dracut.
# shellcheck disable=SC2154

# called by dracut
check() {
    # Only when the configuration (or --add) names this module.
    return 255
}

# called by dracut
depends() {
    return 0
}

# called by dracut
installkernel() {
    # The binder loads vfio_iommu_type1 and vfio-pci itself. Hostonly builds keep only the
    # modules some present device uses, and no device uses these before the binder runs:
    # install them regardless. instmods skips modules the kernel does not have.
    hostonly='' instmods vfio vfio_iommu_type1 vfio-pci
}

# called by dracut
install() {
    local root="${VFIO_BIND_ROOT:-}"
    local binary="$root/usr/bin/vfio-bind"
    local unit="$root/usr/lib/vfio-bind/vfio-bind.service"
    local rules="$root/etc/cmdline.d/vfio-bind.conf"

    # A missing binary must not stop the image from being built (a kernel update would
    # leave the system without an initramfs): warn now; the hook or unit reports it at boot.
    if [[ -f $binary ]]; then
        inst_binary "$binary" /usr/bin/vfio-bind
    else
        dwarn "vfio-bind: '$binary' not found; the image will not bind anything"
    fi

    if dracut_module_included "systemd"; then
        if [[ -f $unit ]]; then
            inst_simple "$unit" "$systemdsystemunitdir/vfio-bind.service"
            "$SYSTEMCTL" -q --root "$initdir" add-wants sysinit.target vfio-bind.service
        else
            dwarn "vfio-bind: '$unit' not found; the image will not run the binder"
        fi
    else
        inst_hook cmdline 00 "$moddir/vfio-bind.sh"
    fi

    # Rules kept on the host, for those who cannot edit the kernel command line. The
    # binder reads /etc/cmdline.d/*.conf besides /proc/cmdline.
    if [[ -f $rules ]]; then
        inst_simple "$rules" /etc/cmdline.d/vfio-bind.conf
    fi
}
