# Writes files to the root filesystem, each fsynced (file and directory) before its name and
# checksum are printed: the host cuts the power (qemu SIGKILL) after some of them, mid-write.
mkdir -p /var/lib/boot-test
result writer_started true "$(ls /var/lib/boot-test | wc -l) files before"
i=0
while [ $i -lt 200 ]; do
  name=$(date +%s%N)-$i
  head -c 262144 /dev/urandom >"/var/lib/boot-test/$name.tmp"
  sync "/var/lib/boot-test/$name.tmp"
  mv "/var/lib/boot-test/$name.tmp" "/var/lib/boot-test/$name"
  sync /var/lib/boot-test
  echo "DMREMAP-FSYNCED $name $(sha256sum "/var/lib/boot-test/$name" | cut -d' ' -f1)"
  i=$((i + 1))
done
