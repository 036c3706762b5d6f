# The boot after a clean power-off: the shutdown hook had the root daemon flush and write its
# metadata once root was read-only, so this boot's server finds the setup stopped cleanly.
# The server logs each spare's copies when it opens the setup, and "did not stop cleanly" when
# the last server left its marker (mod/service/open_setup.ts).
check previous_stop_was_clean sh -c 'grep -q "copies valid" /run/dm-remap/root.log &&
  ! grep "did not stop cleanly" /run/dm-remap/root.log && head -5 /run/dm-remap/root.log'
