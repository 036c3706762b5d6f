# Every file the last boots reported fsynced (fsynced.txt, "name sha256" per line, from the host)
# is there with its content.
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
