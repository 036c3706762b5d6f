/**
 * A range of bytes, the unit every layer from the syscalls up passes around.
 *
 * @module
 */

/** A byte range of a device. */
export interface ByteRange {
  offsetBytes: number;
  lengthBytes: number;
}
