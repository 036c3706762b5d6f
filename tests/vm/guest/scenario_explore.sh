nbd-client -h 2>&1 | head -40
setup_serve_attach --fresh
nbd-client -c $NBD; echo "check $?"
cat /sys/block/nbd0/pid 2>&1; ls /sys/block/nbd0/; ls /sys/module/nbd/parameters; cat /sys/block/nbd0/backend 2>&1
ps | grep nbd
