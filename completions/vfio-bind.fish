# Fish completion for vfio-bind: subcommands, each one's options, and for `rule`, `bind`
# and `release` the PCI functions of the machine (read from SYSFS/bus/pci/devices, SYSFS
# being the --sysfs already typed, else /sys). Installed as
# /usr/share/fish/vendor_completions.d/vfio-bind.fish.

set -l __vfio_bind_commands apply list rule check bind release

# The --sysfs root typed on the command line so far, else /sys.
function __vfio_bind_sysfs
    set -l words (commandline -opc)
    set -l sysfs /sys
    for index in (seq (count $words))
        switch $words[$index]
            case --sysfs
                if test $index -lt (count $words)
                    set sysfs $words[(math $index + 1)]
                end
        end
    end
    echo $sysfs
end

# The function directories below the --sysfs root, bridges (class 0x0604, 0x0607) left
# out: vfio-pci refuses them.
function __vfio_bind_functions
    set -l sysfs (__vfio_bind_sysfs)
    for device in $sysfs/bus/pci/devices/*:*:*.*
        string match -qr '^0x060[47]' -- (cat $device/class 2>/dev/null); and continue
        echo $device
    end
end

# `rule`: every slot (DDDD:BB:SS) and function (DDDD:BB:SS.F).
function __vfio_bind_addresses
    for device in (__vfio_bind_functions)
        set -l address (path basename $device)
        echo $address
        string replace -r '\.[0-7]$' '' $address
    end | sort -u
end

# `bind` and `release`: the guarded rule of every function and of every slot (the IDs of
# its function 0), as `vfio-bind rule` writes them.
function __vfio_bind_rules
    for device in (__vfio_bind_functions)
        set -l address (path basename $device)
        set -l vendor (string replace 0x '' (cat $device/vendor 2>/dev/null))
        set -l id (string replace 0x '' (cat $device/device 2>/dev/null))
        string match -qr '^[0-9a-f]{4}$' -- "$vendor"; or continue
        string match -qr '^[0-9a-f]{4}$' -- "$id"; or continue
        echo "$vendor:$id@$address"
        if string match -q '*.0' -- $address
            echo "$vendor:$id@"(string replace -r '\.0$' '' $address)
        end
    end
end

complete -c vfio-bind -f
complete -c vfio-bind -n "not __fish_seen_subcommand_from $__vfio_bind_commands" -a apply -d 'Bind the functions the rules name to vfio-pci'
complete -c vfio-bind -n "not __fish_seen_subcommand_from $__vfio_bind_commands" -a list -d 'List every PCI function by IOMMU group'
complete -c vfio-bind -n "not __fish_seen_subcommand_from $__vfio_bind_commands" -a rule -d 'Print the guarded rule for an address'
complete -c vfio-bind -n "not __fish_seen_subcommand_from $__vfio_bind_commands" -a check -d 'Check the rules and groups after boot'
complete -c vfio-bind -n "not __fish_seen_subcommand_from $__vfio_bind_commands" -a bind -d 'Bind cards to vfio-pci now'
complete -c vfio-bind -n "not __fish_seen_subcommand_from $__vfio_bind_commands" -a release -d 'Give cards back to their own drivers'

complete -c vfio-bind -l help -d 'Display usage information'
complete -c vfio-bind -n "__fish_seen_subcommand_from $__vfio_bind_commands" -l sysfs -r -F -a '(__fish_complete_directories)' -d 'sysfs root (default /sys)'
complete -c vfio-bind -n '__fish_seen_subcommand_from apply list check' -l cmdline -r -d 'Read rules from this text instead of /proc/cmdline'
complete -c vfio-bind -n '__fish_seen_subcommand_from apply list check' -l cmdline-dir -r -a '(__fish_complete_directories)' -d 'Directory of *.conf fragments'
complete -c vfio-bind -n '__fish_seen_subcommand_from apply' -l dry-run -d 'Print what would be bound, write nothing'
complete -c vfio-bind -n '__fish_seen_subcommand_from list check' -l json -d 'Machine-readable output'
complete -c vfio-bind -n '__fish_seen_subcommand_from apply check bind release' -l iomem -r -F -d 'The iomem tree to read (default /proc/iomem)'
complete -c vfio-bind -n '__fish_seen_subcommand_from apply bind release' -l timeout -r -d 'Give up after this many seconds (default 10)'
complete -c vfio-bind -n '__fish_seen_subcommand_from check' -l host-root -r -a '(__fish_complete_directories)' -d 'Root of /proc, /lib/modules, /boot and /etc for the host checks'
complete -c vfio-bind -n '__fish_seen_subcommand_from rule bind' -l host-root -r -a '(__fish_complete_directories)' -d 'Root of /proc: what the host uses (mounts, swaps, routes)'
complete -c vfio-bind -n '__fish_seen_subcommand_from bind' -l force -d 'Bind even a function the host uses'
complete -c vfio-bind -n '__fish_seen_subcommand_from rule' -a '(__vfio_bind_addresses)' -d 'PCI address'
complete -c vfio-bind -n '__fish_seen_subcommand_from bind release' -a '(__vfio_bind_rules)' -d 'Rule'
