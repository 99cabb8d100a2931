#!/bin/sh
# vfio-bind's job done the fastest way a shell script usually does it, for `cargo xtask bench`
# to time beside the binary (issue 20): for each rule, every function's directory name is
# matched against the rule's address first, which reads no attribute, and only the
# matching functions' vendor and device are read (with `cat`, as wiki-way.sh reads them).
#
#   SYSFS=/sys CMDLINE="$(cat /proc/cmdline)" sh name-filter.sh
#
# Like wiki-way.sh it reads the guarded slot rules of `vfio.bind=` (VVVV:DDDD@DDDD:BB:SS, full
# domain, lower case) and honours the guard: a slot is taken only if some function in it has
# the IDs. Then `echo vfio-pci > driver_override`, unbind the old driver, probe. It does less
# than vfio-bind (no other rule forms, no IOMMU or bridge check, no read-back, no give-back,
# no modprobe), which only flatters it in the comparison.
set -u

sysfs=${SYSFS:-/sys}
cmdline=${CMDLINE:-$(cat /proc/cmdline)}

status=0
# Word splitting is the point here: the command line is split at white space, a
# vfio.bind= value at commas. Nothing in a rule is a glob character, but turn globbing off
# while splitting.
set -f
for param in $cmdline; do
    case $param in
        vfio.bind=* | vfio-bind=* | vfio_bind=*) ;;
        *) continue ;;
    esac
    old_ifs=$IFS
    IFS=,
    # shellcheck disable=SC2086 # splitting at the commas is the point
    set -- ${param#*=}
    IFS=$old_ifs
    set +f
    for rule in "$@"; do
        slot=${rule#*@}
        ids=${rule%@*}
        # The name filter: every function's directory name, matched before any read.
        matching=
        guarded=
        for dev in "$sysfs"/bus/pci/devices/*; do
            addr=${dev##*/}
            case $addr in
                "$slot".*) ;;
                *) continue ;;
            esac
            matching="$matching $addr"
            [ -n "$guarded" ] && continue
            vendor=$(cat "$dev/vendor")
            device=$(cat "$dev/device")
            if [ "${vendor#0x}:${device#0x}" = "$ids" ]; then
                guarded=yes
            fi
        done
        if [ -z "$guarded" ]; then
            echo "name-filter: $slot does not have the IDs of its rule; skipped" >&2
            status=1
            continue
        fi
        for addr in $matching; do
            dev=$sysfs/bus/pci/devices/$addr
            echo vfio-pci > "$dev/driver_override" || status=1
            if [ -e "$dev/driver" ]; then
                echo "$addr" > "$dev/driver/unbind" || status=1
            fi
            echo "$addr" > "$sysfs/bus/pci/drivers_probe" || status=1
        done
    done
    set -f
done
exit "$status"
