#!/bin/bash
# dracut module "dm-remap" (installed in /usr/lib/dracut/modules.d/90dm-remap/): puts the dm-remap
# program, its Deno runtime, its configuration, its udev rule and the nbd module into the
# initramfs, and assembles the dm-remap setups from the disks' metadata alone in the initqueue
# (dm-remap-assemble.sh), before root mounts.
# The counterpart of initramfs-tools' hook and local-top script; the same kernel command line.

# Included when asked for (--add dm-remap) or when the runtime is installed.
check() {
    require_binaries @LIBDIR@/deno || return 1
    return 0
}

# rootfs-block waits for root= (the attached /dev/nbdN) in the initqueue.
depends() {
    echo rootfs-block
    return 0
}

installkernel() {
    hostonly='' instmods nbd virtio_blk virtio_pci
}

install() {
    # inst brings the shared libraries Deno loads (libc, libm, libgcc_s, ...).
    inst @LIBDIR@/deno
    inst @LIBDIR@/dm-remap.js
    # The udev rule, so that udev labels the spares (DM_REMAP_* properties) here as in the real
    # system, and the wrapper its probe runs; the hook reports the spares udev recognised.
    inst_rules 69-dm-remap.rules
    inst @SBIN@/dm-remap
    # The configuration serve reads, when the system has one.
    [[ -f $dracutsysrootdir/etc/dm-remap/dm-remap.yaml ]] && inst -H /etc/dm-remap/dm-remap.yaml
    inst_multiple cp mkdir mount cat
    inst_hook initqueue/settled 50 "$moddir/dm-remap-assemble.sh"
    inst_hook initqueue/finished 50 "$moddir/dm-remap-finished.sh"
    dracut_need_initqueue
}
