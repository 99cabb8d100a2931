#!/bin/bash
# shellcheck shell=bash
#
# The one stand-in for mkinitcpio's build side (mkinitcpio is not packaged for Debian):
# sources an install hook and calls its build() the way mkinitcpio v41 does, with
# stand-ins for the functions an install hook calls. Each stand-in records its call, as
# the hook made it, on one line of "$VFIO_TEST_RECORDS": the function's name and its
# arguments, each field ended by a NUL. Nothing is installed here. Two readers:
#   - the VM test (xtask/src/vm/image/mkinitcpio.rs) carries the records out exactly as
#     mkinitcpio would (files, binaries with their libraries, modules with their
#     dependencies, runtime scripts registered by the run_* functions they define);
#   - the hook tests (tests/hooks_mkinitcpio.rs) compare them with what the hook must ask for.
# add_runscript, like the real one, names the runtime script after the file of its caller
# and looks it up in HOOKSDIR; its record carries the name and the script found.
#
# Usage: build-driver.bash HOOKFILE HOOKSDIR
# Environment: VFIO_TEST_RECORDS (output), VFIO_TEST_HOOKS (the image's HOOKS, which
# mkinitcpio has set from its config when build() runs), VFIO_TEST_NULLGLOB=1 to build with
# nullglob set, as some systemd builds leave it, VFIO_TEST_HELP (if set, the hook's help()
# is written there after build()), BUILDROOT and KERNELVERSION (passed on to the hook).
# Exits 1 if the hook called `error` or has no build(), else with build()'s status.

# The stand-ins are called by the sourced hook, which shellcheck cannot see.
# shellcheck disable=SC2317

set -u
hook_file="$1"
_d_hooks="$2"
_errors=0

record() {
    printf '%s\0' "$@" >>"$VFIO_TEST_RECORDS"
    printf '\n' >>"$VFIO_TEST_RECORDS"
}

add_module() { record add_module "$@"; }
add_binary() { record add_binary "$@"; }
add_file() { record add_file "$@"; }
add_dir() { record add_dir "$@"; }
add_symlink() { record add_symlink "$@"; }
add_full_dir() { record add_full_dir "$@"; }
add_runscript() {
    local hookname="${BASH_SOURCE[1]##*/}" script
    if ! script=$(PATH=$_d_hooks type -P "$hookname"); then
        error "runtime script for '%s' not found" "$hookname"
        return
    fi
    record add_runscript "$hookname" "$script"
}
add_checked_modules() { record add_checked_modules "$@"; }
add_all_modules() { record add_all_modules "$@"; }
add_systemd_unit() { record add_systemd_unit "$@"; }
add_udev_rule() { record add_udev_rule "$@"; }
map() {
    local r=0 fn="$1"
    shift
    for arg in "$@"; do "$fn" "$arg" || r=1; done
    return "$r"
}
# shellcheck disable=SC2059
msg() { printf "==> $1\n" "${@:2}" >&2; }
# shellcheck disable=SC2059
plain() { printf "    $1\n" "${@:2}" >&2; }
quiet() { :; }
# Warnings and errors are printed as mkinitcpio prints them, and recorded.
# shellcheck disable=SC2059
warning() {
    printf "==> WARNING: $1\n" "${@:2}" >&2
    record warning "$@"
}
# shellcheck disable=SC2059
error() {
    printf "==> ERROR: $1\n" "${@:2}" >&2
    record error "$@"
    _errors=$((_errors + 1))
    return 1
}

export BUILDROOT KERNELVERSION
# shellcheck disable=SC2034 # read by the sourced hook
read -ra HOOKS <<<"${VFIO_TEST_HOOKS:-}"
shopt -s extglob
if [ "${VFIO_TEST_NULLGLOB:-0}" = 1 ]; then
    shopt -s nullglob
fi

# shellcheck source=/dev/null
. "$hook_file"
if ! declare -f build >/dev/null; then
    error "%s has no build()" "$hook_file"
    exit 1
fi
build
status=$?
if [ -n "${VFIO_TEST_HELP:-}" ]; then
    help >"$VFIO_TEST_HELP" || status=1
fi
if [ "$_errors" -ne 0 ]; then
    exit 1
fi
exit "$status"
