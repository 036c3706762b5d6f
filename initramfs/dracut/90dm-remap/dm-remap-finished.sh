#!/bin/sh
# dracut initqueue/finished hook of the dm-remap module: the initqueue is not done before
# dm-remap-assemble.sh has started a server, or was told not to (rd.dm_remap=0). Without this,
# root= (/dev/nbdN, a node that exists as soon as nbd is loaded) could end the queue first.
[ -e /run/dm-remap/initqueue.done ]
