# After a power cut: every file the last boots reported fsynced (fsynced.txt, "name sha256" per
# line, from the host) is there with its content; then a clean power-off.
bad=""
count=0
while read -r name sum; do
  [ -n "$name" ] || continue
  count=$((count + 1))
  have=$(sha256sum "/var/lib/boot-test/$name" 2>/dev/null | cut -d' ' -f1)
  [ "$have" = "$sum" ] || bad="$bad $name"
done </run/check/fsynced.txt
if [ -z "$bad" ] && [ $count -gt 0 ]; then
  result fsynced_files_verify true "$count files"
else
  result fsynced_files_verify false "$count files listed, wrong or missing:$bad"
fi
# The serving marker the cut left makes this boot's server say so (mod/service/open_setup.ts).
check server_replayed_after_power_cut grep -m1 "did not stop cleanly" /run/dm-remap/root.log
