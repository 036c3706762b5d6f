# Scenario 6 (negative control of the I/O watch): the server is frozen (SIGSTOP) while a read is
# in flight, for longer than IO_STALL_SECONDS. The watch must report io_stall, with the server's
# threads in its report, and io_watch must fail; then the server resumes and answers.
note start
setup_serve_attach --fresh || return 1
drop_caches
kill -STOP "$SERVE_PID"
dd if="$NBD" of=/dev/null bs=4096 count=1 skip=1000 iflag=direct 2>/tmp/dd.err &
reader=$!
sleep $((IO_STALL_SECONDS + 4))
kill -CONT "$SERVE_PID"
wait $reader
result read_after_resume "$([ $? -eq 0 ] && echo true || echo false)" "$(cat /tmp/dd.err)"
check nbd_disconnect nbd-client -d "$NBD"
serve_stop
note end
