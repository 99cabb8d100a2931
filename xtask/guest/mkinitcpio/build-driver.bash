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
# and looks it up in HOOKSDIR; its record carries the name and the script found. Like v41's
# add_binary, which it calls, it then warns "Possibly missing '/usr/bin/ash' for script: ..."
# when the script's interpreter is not in BUILDROOT yet (the `base` hook puts ash there).
#
# The hooks that run: as v41's compute_hookset, `_hooks` is HOOKS followed by every hook of
# `-A`, less every hook of `-S` (options comma-separated, repeatable). HOOKS keeps the
# config's value: v41 says "HOOKS should not be referenced from here on", and an install
# hook that reads it is wrong for `-A`/`-S` builds. The hook is run only if its name (its
# file's) is in `_hooks`. Without a BUILDROOT from the caller, the stand-in makes one next to
# VFIO_TEST_RECORDS with what the hooks run before this one leave there that it can see:
# `/usr/bin/ash` when `base` comes before it in `_hooks`.
#
# Usage: build-driver.bash [-A HOOK,...] [-S HOOK,...] HOOKFILE HOOKSDIR
# Environment: VFIO_TEST_RECORDS (output), VFIO_TEST_HOOKS (the image's HOOKS, which
# mkinitcpio has set from its config when build() runs), VFIO_TEST_NULLGLOB=1 to build with
# nullglob set, as some systemd builds leave it, VFIO_TEST_HELP (if set, the hook's help()
# is written there after build()), BUILDROOT and KERNELVERSION (passed on to the hook).
# Exits 1 if the hook called `error` or has no build(), else with build()'s status (0 when
# the hook is not among the hooks that run).

# The stand-ins are called by the sourced hook, which shellcheck cannot see.
# shellcheck disable=SC2317

set -u
_optaddhooks=() _optskiphooks=()
OPTIND=1
while getopts 'A:S:' _option; do
    case "$_option" in
        A) IFS=, read -r -a _listed <<<"$OPTARG" && _optaddhooks+=("${_listed[@]}") ;;
        S) IFS=, read -r -a _listed <<<"$OPTARG" && _optskiphooks+=("${_listed[@]}") ;;
        *) exit 2 ;;
    esac
done
shift $((OPTIND - 1))
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
    _check_interpreter "$script"
}
# What v41's add_binary checks of a script it adds: that the interpreter of its `#!` line
# is in BUILDROOT (an absolute path, or a name found in BUILDROOT's bin directories).
_check_interpreter() {
    local shebang interpreter
    IFS= read -r shebang <"$1" || return 0
    [[ "$shebang" == '#!'* ]] || return 0
    interpreter="${shebang#'#!'}"
    interpreter="${interpreter##+([[:space:]])}"
    if [[ "$interpreter" == '/usr/bin/env'* ]]; then
        interpreter="${interpreter##'/usr/bin/env'+([[:space:]])}"
    fi
    interpreter="${interpreter%%[[:space:]]*}"
    if [[ "$interpreter" != /* ]] &&
        PATH="$BUILDROOT/usr/local/sbin:$BUILDROOT/usr/local/bin:$BUILDROOT/usr/bin" type -P "$interpreter" >/dev/null; then
        return 0
    fi
    [[ -e "$BUILDROOT/$interpreter" ]] ||
        warning "Possibly missing '%s' for script: %s" "$interpreter" "$1"
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

# shellcheck disable=SC2034 # read by the sourced hook
read -ra HOOKS <<<"${VFIO_TEST_HOOKS:-}"
shopt -s extglob
# v41's compute_hookset.
_hooks=()
for _hook in "${HOOKS[@]}" "${_optaddhooks[@]}"; do
    for _skipped in "${_optskiphooks[@]}"; do
        [[ "$_hook" == "$_skipped" ]] && continue 2
    done
    _hooks+=("$_hook")
done
_this_hook="${hook_file##*/}"
_runs=0
for _hook in "${_hooks[@]}"; do
    [[ "$_hook" == "$_this_hook" ]] && _runs=1
done
if [ "$_runs" = 0 ]; then
    exit 0
fi
if [ -z "${BUILDROOT:-}" ]; then
    BUILDROOT="$VFIO_TEST_RECORDS.buildroot"
    rm -rf "$BUILDROOT"
    mkdir -p "$BUILDROOT/usr/bin"
    for _hook in "${_hooks[@]}"; do
        [[ "$_hook" == "$_this_hook" ]] && break
        if [[ "$_hook" == base ]]; then
            : >"$BUILDROOT/usr/bin/ash"
        fi
    done
fi
export BUILDROOT KERNELVERSION
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
