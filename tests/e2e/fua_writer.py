"""Writes, or verifies, numbered and recognisable blocks through libnbd.

Usage:
  python3 fua_writer.py write  URI BLOCK_BYTES FIRST_BLOCK COUNT STRIDE ROUND
  python3 fua_writer.py verify URI BLOCK_BYTES FIRST_BLOCK COUNT STRIDE ROUND

Block i lives at (FIRST_BLOCK + i * STRIDE) * BLOCK_BYTES and holds
pattern(ROUND, i). "write" sends each with FUA and prints "acked i" once the
server has acknowledged it, so a test can kill the server at any moment and
know exactly which writes were acknowledged. "verify" prints "ok i" or
"bad i" for each block.
"""
import sys

import nbd


def pattern(round_number, index, length):
    seed = f"round {round_number} block {index} ".encode()
    return (seed * (length // len(seed) + 1))[:length]


def main():
    mode, uri, block_bytes, first, count, stride, round_number = sys.argv[1:8]
    block_bytes, first, count, stride = int(block_bytes), int(first), int(count), int(stride)
    handle = nbd.NBD()
    handle.connect_uri(uri)
    for index in range(count):
        offset = (first + index * stride) * block_bytes
        expected = pattern(round_number, index, block_bytes)
        if mode == "write":
            handle.pwrite(expected, offset, nbd.CMD_FLAG_FUA)
            print(f"acked {index}", flush=True)
        else:
            print(f"{'ok' if handle.pread(block_bytes, offset) == expected else 'bad'} {index}", flush=True)
    handle.shutdown()


if __name__ == "__main__":
    main()
