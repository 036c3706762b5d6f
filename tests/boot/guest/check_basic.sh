# A first boot: root on the remapped device, served by the initramfs's root storage daemon that
# the unit adopted; then a clean shutdown (poweroff).
root_checks
done_and_poweroff
