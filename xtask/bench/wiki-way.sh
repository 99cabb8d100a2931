#!/bin/sh
# vfio-bind's job done the way wiki and forum scripts do it, for `cargo xtask bench` to time
# beside the binary: loop over /sys/bus/pci/devices, `cat` each vendor and device, compare,
# `echo vfio-pci > driver_override`, unbind the old driver, probe.
#
#   SYSFS=/sys CMDLINE="$(cat /proc/cmdline)" sh wiki-way.sh
#
# It reads the guarded slot rules of `vfio.bind=` (VVVV:DDDD@DDDD:BB:SS, full domain, lower
# case: the canonical form `vfio-bind rule` prints) and honours the guard: a slot is taken
# only if some function in it has the IDs. It does less than vfio-bind (no other rule forms,
# no IOMMU check, no bridge check, no read-back, no give-back, no modprobe), which only
# flatters it in the comparison.
set -u

sysfs=${SYSFS:-/sys}
cmdline=${CMDLINE:-$(cat /proc/cmdline)}

rules=
# Word splitting is the point here: the command line is split at white space, a
# vfio.bind= value at commas. Nothing in a rule is a glob character, but turn globbing off.
set -f
for param in $cmdline; do
    case $param in
        vfio.bind=* | vfio-bind=* | vfio_bind=*)
            old_ifs=$IFS
            IFS=,
            for rule in ${param#*=}; do
                rules="$rules $rule"
            done
            IFS=$old_ifs
            ;;
    esac
done
set +f
[ -n "$rules" ] || exit 0

candidates= # functions in the slot of some rule
confirmed=  # slots where a rule's IDs were found
for dev in "$sysfs"/bus/pci/devices/*; do
    addr=${dev##*/}
    vendor=$(cat "$dev/vendor")
    device=$(cat "$dev/device")
    ids="${vendor#0x}:${device#0x}"
    for rule in $rules; do
        slot=${rule#*@}
        case $addr in
            "$slot".*)
                candidates="$candidates $addr"
                if [ "$ids" = "${rule%@*}" ]; then
                    confirmed="$confirmed $slot"
                fi
                ;;
        esac
    done
done

status=0
for addr in $candidates; do
    case " $confirmed " in
        *" ${addr%.*} "*) ;;
        *)
            echo "wiki-way: ${addr%.*} does not have the IDs of its rule; skipped" >&2
            status=1
            continue
            ;;
    esac
    dev=$sysfs/bus/pci/devices/$addr
    echo vfio-pci > "$dev/driver_override" || status=1
    if [ -e "$dev/driver" ]; then
        echo "$addr" > "$dev/driver/unbind" || status=1
    fi
    echo "$addr" > "$sysfs/bus/pci/drivers_probe" || status=1
done
exit "$status"
