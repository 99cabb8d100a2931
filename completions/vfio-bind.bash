# shellcheck shell=bash
# Bash completion for vfio-bind: subcommands, each one's options, and for `rule`, `bind`
# and `release` the PCI functions of the machine (read from SYSFS/bus/pci/devices, SYSFS
# being the --sysfs already typed, else /sys). Installed as
# /usr/share/bash-completion/completions/vfio-bind, which bash-completion loads on demand.

# The options of one subcommand (what its --help lists), one word each.
_vfio_bind_options() {
    case $1 in
        apply) echo --sysfs --cmdline --cmdline-dir --dry-run --iomem --timeout --help ;;
        list) echo --sysfs --cmdline --cmdline-dir --json --help ;;
        check) echo --sysfs --cmdline --cmdline-dir --json --host-root --iomem --help ;;
        rule) echo --sysfs --host-root --help ;;
        bind) echo --sysfs --iomem --timeout --force --host-root --help ;;
        release) echo --sysfs --iomem --timeout --help ;;
    esac
}

# Prints what to offer for an address or a rule, one per line: for `rule` every slot
# (DDDD:BB:SS) and function (DDDD:BB:SS.F); for `bind` and `release` the guarded rule of
# every slot (IDS of its function 0 @DDDD:BB:SS) and of every function, as `vfio-bind rule`
# would write them. Bridges (class 0x0604, 0x0607) are left out: vfio-pci refuses them.
# Nothing when the sysfs root has no PCI devices.
_vfio_bind_addresses() {
    local kind=$1 sysfs=$2 device address vendor id class
    local -A slots=()
    for device in "$sysfs"/bus/pci/devices/*:*:*.*; do
        [[ -e $device ]] || continue
        address=${device##*/}
        class=''
        read -r class 2>/dev/null <"$device/class"
        [[ $class == 0x0604?? || $class == 0x0607?? ]] && continue
        if [[ $kind == rule ]]; then
            slots[${address%.*}]=1
            printf '%s\n' "$address"
            continue
        fi
        vendor='' id=''
        read -r vendor 2>/dev/null <"$device/vendor"
        read -r id 2>/dev/null <"$device/device"
        [[ $vendor == 0x???? && $id == 0x???? ]] || continue
        printf '%s:%s@%s\n' "${vendor#0x}" "${id#0x}" "$address"
        if [[ ${address##*.} == 0 ]]; then
            printf '%s:%s@%s\n' "${vendor#0x}" "${id#0x}" "${address%.*}"
        fi
    done
    if [[ $kind == rule ]]; then
        for address in "${!slots[@]}"; do
            printf '%s\n' "$address"
        done
    fi
}

_vfio_bind() {
    local cur prev words cword
    # Addresses hold colons, which bash splits words at: bash-completion's helper joins
    # them back (and the colon prefix is trimmed from the candidates below).
    if declare -F _get_comp_words_by_ref >/dev/null; then
        _get_comp_words_by_ref -n : cur prev words cword
    else
        cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
        words=("${COMP_WORDS[@]}") cword=$COMP_CWORD
    fi
    local command='' sysfs=/sys index
    ((cword > 1)) && command=${words[1]}
    for ((index = 2; index < cword; index++)); do
        case ${words[index]} in
            --sysfs) sysfs=${words[index + 1]:-/sys} ;;
        esac
    done
    COMPREPLY=()
    if [[ -z $command ]]; then
        mapfile -t COMPREPLY < <(compgen -W 'apply list rule check bind release help --help' -- "$cur")
        return 0
    fi
    case $prev in
        --sysfs | --cmdline-dir | --host-root)
            mapfile -t COMPREPLY < <(compgen -d -- "$cur")
            return 0
            ;;
        --iomem)
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            return 0
            ;;
        --cmdline | --timeout) return 0 ;;
    esac
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$(_vfio_bind_options "$command")" -- "$cur")
        return 0
    fi
    case $command in
        rule | bind | release)
            # `rule` takes one address; `bind` and `release` any number of rules.
            mapfile -t COMPREPLY < <(compgen -W "$(_vfio_bind_addresses "$command" "$sysfs")" -- "$cur")
            if declare -F __ltrim_colon_completions >/dev/null; then
                __ltrim_colon_completions "$cur"
            fi
            ;;
    esac
    return 0
}

complete -F _vfio_bind vfio-bind
