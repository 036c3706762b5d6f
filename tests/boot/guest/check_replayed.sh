# The boot after a power cut: the serving marker the cut left makes this boot's server say so
# (mod/service/open_setup.ts).
check server_replayed_after_power_cut grep -m1 "did not stop cleanly" /run/dm-remap/root.log
