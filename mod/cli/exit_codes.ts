/**
 * Process exit codes: one table for the boundary between errors and the shell.
 *
 * | code | meaning |
 * |---|---|
 * | 0 | success |
 * | 1 | the command ran and found a problem (e.g. `check` found invalid copies), or the answer at a prompt was no |
 * | 2 | usage: the command line or input is wrong, or a write needs confirmation and there is no terminal and no `--yes`; nothing was touched |
 * | 3 | device I/O: a device or file could not be opened, read or written |
 * | 4 | data-integrity refusal: no valid metadata, wrong setup or disk, two names of one disk, data that `--force` would destroy, newer format |
 * | 69 | unavailable: no `serve` answers or runs the setup, a device is in use by another process, a server did not stop in time, a socket or port is taken, or the kernel's NBD device cannot be attached |
 * | 70 | internal error (an assertion failed, or a bug): please report it |
 *
 * Only code 70 prints a stack trace: every other code is an operating error
 * whose message says what to do.
 *
 * @module
 */

import { AssertionError } from "../assert.ts";
import { StatusRequestError } from "../api/client.ts";
import {
  DeviceIoError,
  DeviceOpenError,
  ListenError,
  NoValidCopyError,
  RefusedError,
  SetupMismatchError,
  UnavailableError,
  UnsupportedVersionError,
  UsageError,
} from "../errors.ts";

export const EXIT_OK = 0;
export const EXIT_PROBLEM_FOUND = 1;
export const EXIT_USAGE = 2;
export const EXIT_DEVICE = 3;
export const EXIT_INTEGRITY = 4;
export const EXIT_UNAVAILABLE = 69;
export const EXIT_INTERNAL = 70;

/** The exit code for an error that ended a command. */
export function exitCodeFor(error: unknown): number {
  if (error instanceof AssertionError) return EXIT_INTERNAL;
  if (error instanceof UsageError) return EXIT_USAGE;
  if (error instanceof DeviceOpenError && error.code === "EBUSY") return EXIT_UNAVAILABLE;
  if (error instanceof DeviceIoError || error instanceof DeviceOpenError) return EXIT_DEVICE;
  if (
    error instanceof NoValidCopyError || error instanceof SetupMismatchError ||
    error instanceof RefusedError ||
    error instanceof UnsupportedVersionError
  ) return EXIT_INTEGRITY;
  if (
    error instanceof StatusRequestError || error instanceof ListenError ||
    error instanceof UnavailableError
  ) return EXIT_UNAVAILABLE;
  if (error instanceof Deno.errors.AddrInUse) return EXIT_UNAVAILABLE;
  // Any other error of the operating system (a directory that cannot be made, a full disk).
  if (OS_ERRORS.some((kind) => error instanceof kind)) return EXIT_DEVICE;
  return EXIT_INTERNAL;
}

const OS_ERRORS: readonly (new (...args: never[]) => Error)[] = Object.values(Deno.errors);
