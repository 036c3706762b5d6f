"""Writes numbered, recognisable blocks through libnbd with FUA and reports each
acknowledgement on stdout, so a test can kill the server at any moment and
know exactly which writes were acknowledged.

Usage: python3 fua_writer.py URI BLOCK_BYTES FIRST_BLOCK COUNT STRIDE ROUND
Block i is written at (FIRST_BLOCK + i * STRIDE) * BLOCK_BYTES and holds
pattern(ROUND, i); "acked i" is printed after the server acknowledged it.
"""
import sys

import nbd


def pattern(round_number, index, length):
    seed = f"round {round_number} block {index} ".encode()
    return (seed * (length // len(seed) + 1))[:length]


def main():
    uri, block_bytes, first, count, stride, round_number = sys.argv[1:7]
    block_bytes, first, count, stride = int(block_bytes), int(first), int(count), int(stride)
    handle = nbd.NBD()
    handle.connect_uri(uri)
    for index in range(count):
        offset = (first + index * stride) * block_bytes
        handle.pwrite(pattern(round_number, index, block_bytes), offset, nbd.CMD_FLAG_FUA)
        print(f"acked {index}", flush=True)
    handle.shutdown()


if __name__ == "__main__":
    main()
