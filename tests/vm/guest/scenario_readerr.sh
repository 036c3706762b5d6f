# Scenario 5: a block written before it went bad returns EIO to the reader (never zeros),
# shows as pending in the status API, and the next write heals it.
note start
setup_serve_attach --fresh || return 1
dd if=/dev/urandom of=/tmp/old bs=4096 count=8 2>/dev/null
check write_old dd if=/tmp/old of="$NBD" bs=4096 seek=1000 count=8 oflag=direct
# Block 1002 (main sectors 8016-8023) goes bad.
check set_bad main_set_bad 8016:8
rm -f /tmp/got
dd if="$NBD" of=/tmp/got bs=4096 skip=1002 count=1 iflag=direct 2>/tmp/dd.err
code=$?
size=$(wc -c </tmp/got 2>/dev/null || echo 0)
result read_bad_is_eio "$([ $code -ne 0 ] && grep -q "Input/output error" /tmp/dd.err && [ "$size" -eq 0 ] && echo true || echo false)" "dd exit $code, $size bytes: $(cat /tmp/dd.err)"
dd if="$NBD" of=/tmp/got8 bs=32768 skip=125 count=1 iflag=direct 2>/tmp/dd8.err
code=$?
result read_span_is_eio "$([ $code -ne 0 ] && [ "$(wc -c </tmp/got8)" -eq 0 ] && echo true || echo false)" "dd exit $code: $(cat /tmp/dd8.err)"
dd if=/tmp/old of=/tmp/old1003 bs=4096 skip=3 count=5 2>/dev/null
check read_neighbours sh -c "dd if=$NBD bs=4096 skip=1003 count=5 iflag=direct 2>/dev/null | cmp - /tmp/old1003"
status=$(status_json)
result status_pending "$(echo "$status" | tr -d ' \n' | grep -q '"pendingBlocks":\[1002\]' && echo true || echo false)" "$status"
dd if=/dev/urandom of=/tmp/new bs=4096 count=1 2>/dev/null
check heal_write dd if=/tmp/new of="$NBD" bs=4096 seek=1002 count=1 oflag=direct
check read_healed sh -c "dd if=$NBD bs=4096 skip=1002 count=1 iflag=direct 2>/dev/null | cmp - /tmp/new"
status=$(status_json)
result status_healed "$(echo "$status" | tr -d ' \n' | grep -q '"pendingBlocks":\[\]' && [ "$(echo "$status" | json_number remaps)" -eq 1 ] && echo true || echo false)" "$status"
check dmesg_shows_eio sh -c "dmesg | grep -i 'error' | grep nbd0"
serve_stop
note end
