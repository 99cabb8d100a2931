#!/bin/sh
# shellcheck shell=sh
#
# Stand-ins for the initramfs-tools hook-functions a build hook calls (see
# /usr/share/initramfs-tools/hook-functions). Each appends one line, its name and
# arguments, to "$HOOK_LOG"; nothing is installed.

_stub_log() {
    printf '%s\n' "$*" >>"${HOOK_LOG:?}"
}

copy_exec() { _stub_log copy_exec "$@"; }
copy_file() { _stub_log copy_file "$@"; }
manual_add_modules() { _stub_log manual_add_modules "$@"; }
add_firmware() { _stub_log add_firmware "$@"; }
