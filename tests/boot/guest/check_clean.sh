# The boot after a clean power-off: the shutdown hook had the root daemon flush and write its
# metadata once root was read-only, so this boot's server finds the setup stopped cleanly.
check previous_stop_was_clean sh -c '! grep "NOT CLEAN" /run/dm-remap/root.log && cat /run/dm-remap/root.log | head -5'
