#!/bin/bash
# shellcheck shell=bash
#
# Stand-ins for the dracut functions and variables a module-setup.sh uses (see dracut's
# dracut-init.sh). Each function appends one line, its name and arguments, to "$HOOK_LOG";
# nothing is installed. instmods also logs the value of `hostonly` it sees, and
# dracut_module_included answers from the space-separated list in $STUB_DRACUT_MODULES.

_stub_log() {
    printf '%s\n' "$*" >>"${HOOK_LOG:?}"
}

inst_simple() { _stub_log inst_simple "$@"; }
inst_binary() { _stub_log inst_binary "$@"; }
inst_multiple() { _stub_log inst_multiple "$@"; }
inst_hook() { _stub_log inst_hook "$@"; }
instmods() { _stub_log "instmods hostonly=[${hostonly-}]" "$@"; }
dwarn() { _stub_log dwarn "$@"; }
derror() { _stub_log derror "$@"; }
dracut_module_included() {
    [[ " ${STUB_DRACUT_MODULES:-} " == *" $1 "* ]]
}
_stub_systemctl() { _stub_log systemctl "$@"; }

# What dracut sets before it calls a module's functions. hostonly is on, as on Fedora and
# openSUSE, so that a module which forgets to override it is caught.
# shellcheck disable=SC2034
{
    hostonly='-h'
    initdir='/INITDIR'
    moddir="${STUB_MODDIR:?}"
    systemdsystemunitdir='/usr/lib/systemd/system'
    SYSTEMCTL='_stub_systemctl'
}
