#!/bin/bash
# shellcheck shell=bash
#
# Stand-ins for the mkinitcpio functions an install hook calls (see mkinitcpio's
# `functions`). Each appends one line, its name and arguments, to "$HOOK_LOG"; nothing is
# installed. add_runscript, like the real one, names the runtime hook after the file of
# its caller.

_stub_log() {
    printf '%s\n' "$*" >>"${HOOK_LOG:?}"
}

add_module() { _stub_log add_module "$@"; }
add_binary() { _stub_log add_binary "$@"; }
add_file() { _stub_log add_file "$@"; }
add_symlink() { _stub_log add_symlink "$@"; }
add_dir() { _stub_log add_dir "$@"; }
add_systemd_unit() { _stub_log add_systemd_unit "$@"; }
add_runscript() { _stub_log add_runscript "${BASH_SOURCE[1]##*/}"; }
warning() { _stub_log warning "$@"; }
error() {
    _stub_log error "$@"
    return 1
}
