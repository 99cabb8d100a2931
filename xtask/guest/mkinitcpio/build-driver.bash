#!/bin/bash
# shellcheck shell=bash
#
# Test-only driver for a mkinitcpio install hook: sources the hook and calls its build()
# with stand-ins for mkinitcpio's functions. Each stand-in records its call, NUL-separated
# fields on one line of "$VFIO_TEST_RECORDS", for the xtask to carry out exactly as
# mkinitcpio would (copy files, binaries with their libraries, modules with their
# dependencies, runtime scripts registered by the run_* functions they define).
#
# Usage: build-driver.bash HOOKFILE HOOKSDIR
#   HOOKSDIR is where add_runscript looks for the runtime script of the same name.
# Environment: VFIO_TEST_RECORDS (output), BUILDROOT, KERNELVERSION, VFIO_TEST_HOOKS (the
# image's HOOKS, which mkinitcpio has set from its config when build() runs),
# VFIO_TEST_NULLGLOB=1 to build with nullglob set, as some systemd builds leave it.

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

add_module() { record module "$@"; }
add_binary() { record binary "$@"; }
add_file() { record file "$@"; }
add_dir() { record dir "$@"; }
add_symlink() { record symlink "$@"; }
add_full_dir() { record full_dir "$@"; }
add_runscript() {
    local hookname="${BASH_SOURCE[1]##*/}" script
    if ! script=$(PATH=$_d_hooks type -P "$hookname"); then
        error "runtime script for '%s' not found" "$hookname"
        return
    fi
    record runscript "$hookname" "$script"
}
add_checked_modules() { record checked_modules "$@"; }
add_all_modules() { record all_modules "$@"; }
add_systemd_unit() { record systemd_unit "$@"; }
add_udev_rule() { record udev_rule "$@"; }
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
# shellcheck disable=SC2059
quiet() { :; }
# shellcheck disable=SC2059
warning() { printf "==> WARNING: $1\n" "${@:2}" >&2; }
# shellcheck disable=SC2059
error() {
    printf "==> ERROR: $1\n" "${@:2}" >&2
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
if [ "$_errors" -ne 0 ]; then
    exit 1
fi
exit "$status"
