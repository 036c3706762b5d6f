#!/bin/sh
# dracut initqueue/settled hook of the dm-remap module: assembles the dm-remap setups from the disks'
# metadata alone (`dm-remap assemble`), so a root filesystem on /dev/nbdN can mount. The initqueue
# sources it at each round once udev has settled, as disks may still be appearing, until a server
# has started (its log is written) and the kernel device is attached. Kernel command line, as for
# initramfs-tools:
#   rd.dm_remap=0              do nothing
#   rd.dm_remap.uuid=UUID      assemble only this setup (repeatable); default: every complete setup
#   rd.dm_remap.timeout=S      how long to wait for slow disks before giving up (default 30)
# The server runs as a root storage daemon: argv[0] "@dm-remap" (spared by systemd at switch_root
# and shutdown), started from a copy of the runtime on a tmpfs under /run, which moves to the real
# root at switch_root, so no file of the initramfs stays in use.
# Messages go to /dev/kmsg, which the console shows (dracut's info needs rd.info).
type getarg >/dev/null 2>&1 || . /lib/dracut-lib.sh

dm_remap_uptime_s() {
    read -r up _ </proc/uptime
    echo "${up%.*}"
}

dm_remap_round() {
    local run=/run/dm-remap uuids timeout log state
    [ -e "$run/initqueue.done" ] && return 0
    if ! getargbool 1 rd.dm_remap; then
        echo "dm-remap: disabled by rd.dm_remap=0" >/dev/kmsg
        mkdir -p "$run" && : >"$run/initqueue.done"
        return 0
    fi
    if [ ! -e "$run/started" ]; then
        modprobe nbd
        mkdir -p "$run/bin" "$run/state"
        mount -t tmpfs -o mode=0755,size=256m dm-remap-runtime "$run/bin"
        # A second /proc over the first: switch_root moves the top one into the real root, and
        # the server, whose root stays the initramfs, keeps the one below. Without it Deno panics
        # when the server starts a worker after the switch ("no /proc/self/exe available").
        mount -t proc dm-remap-proc /proc
        cp @LIBDIR@/deno @LIBDIR@/dm-remap.js "$run/bin/"
        read -r up _ </proc/uptime
        echo "$up" >"$run/started"
    fi
    export DENO_DIR="$run/deno" DENO_NO_UPDATE_CHECK=1 NO_COLOR=1 HOME=/run
    export DM_REMAP_STATE_DIR="$run/state" DM_REMAP_RUN_DIR="$run" DM_REMAP_SERVE_ARGV0=@dm-remap
    uuids=$(getargs rd.dm_remap.uuid=)
    timeout=$(getarg rd.dm_remap.timeout=)
    read -r started _ <"$run/started"
    if ! dm_remap_serving; then
        # shellcheck disable=SC2086
        if [ -n "$uuids" ]; then set -- $uuids; else set -- --scan; fi
        # Probes get 30 s (not 2 s): under emulation, or with slow disks, a probe worker starts slowly.
        "$run/bin/deno" run --allow-all "$run/bin/dm-remap.js" assemble "$@" --timeout-ms 30000 \
            >"$run/assemble.out" 2>&1
        if dm_remap_serving; then
            echo "dm-remap: assemble: $(cat "$run/assemble.out")" >/dev/kmsg
        elif [ "$(dm_remap_uptime_s)" -ge $((${started%.*} + ${timeout:-30})) ]; then
            warn "$(cat "$run/assemble.out")"
            die "dm-remap: could not assemble $* within ${timeout:-30}s (reasons above); boot with rd.dm_remap=0 to skip, or rd.dm_remap.timeout=S to wait longer"
        fi
    fi
    dm_remap_serving || return 0
    # assemble returns once each serve runs; the kernel device is ready once serve has attached it.
    for state in "$run"/setups/*.json; do
        [ -f "$state" ] || continue
        case "$(cat "$state")" in *'"kernelDevice"'*)
            # The udev rule (the module put it here) labels each spare it recognises.
            for block in /sys/class/block/*; do
                case "$(udevadm info --query=property --path="$block" 2>/dev/null)" in
                *DM_REMAP_UUID=*)
                    echo "dm-remap: udev recognised /dev/${block##*/} as a dm-remap spare" >/dev/kmsg
                    ;;
                esac
            done
            read -r ended _ </proc/uptime
            echo "dm-remap: assembled in the initramfs from ${started}s to ${ended}s of uptime" >/dev/kmsg
            : >"$run/initqueue.done"
            return 0
            ;;
        esac
    done
    if [ "$(dm_remap_uptime_s)" -ge $((${started%.*} + ${timeout:-30})) ]; then
        cat "$run"/*.log
        die "dm-remap: no kernel device attached within ${timeout:-30}s (the servers' logs are above)"
    fi
    # Not attached yet: the next round looks again.
    : >"$hookdir/initqueue/work"
}

# A server started: assemble wrote its log.
dm_remap_serving() {
    for log in /run/dm-remap/*.log; do [ -f "$log" ] && return 0; done
    return 1
}

dm_remap_round
