/**
 * Generic netlink against the host's kernel: the control family answers by
 * name, a family that is not there is ENOENT, and the kernel's NBD family is
 * reported with the fix when its module is missing. Attributes survive a
 * round trip through the encoder and decoder, nested ones included.
 */

import assert, { deepStrictEqual as assertEquals } from "node:assert/strict";
import {
  attributeNumber,
  decodeAttributes,
  encodeAttributes,
  GenericNetlink,
  NetlinkError,
} from "../../mod/sys/netlink.ts";
import { describeNetlinkFailure, KernelNbd } from "../../mod/export/nbd/kernel_nbd.ts";

Deno.test("netlink: the control family resolves its own name to its fixed id", () => {
  using netlink = GenericNetlink.open();
  assertEquals(netlink.familyId("nlctrl"), 0x10);
});

Deno.test("netlink: a family the kernel does not have is ENOENT", () => {
  using netlink = GenericNetlink.open();
  assert.throws(
    () => netlink.familyId("nosuchfamily"),
    (error) => error instanceof NetlinkError && error.errno === 2,
  );
});

Deno.test("netlink: the nbd family is found when its module is loaded, else the error says modprobe", () => {
  const loaded = (() => {
    try {
      return Deno.statSync("/sys/module/nbd").isDirectory;
    } catch {
      return false;
    }
  })();
  if (loaded) {
    using kernel = KernelNbd.open();
    assert(Array.isArray(kernel.status()));
    return;
  }
  let failure: unknown;
  try {
    KernelNbd.open();
  } catch (error) {
    failure = error;
  }
  assert(failure instanceof NetlinkError && failure.errno === 2, String(failure));
  assert.match(describeNetlinkFailure(failure, "cannot attach"), /no nbd module.*modprobe nbd/);
});

Deno.test("netlink: attributes round-trip, numbers by width, strings NUL-terminated, nested flagged", () => {
  const encoded = encodeAttributes([
    { type: 1, u32: 7 },
    { type: 2, u64: 1n << 40n },
    { type: 3, string: "dm-remap:abc" },
    { type: 7, nested: [{ type: 1, nested: [{ type: 1, u32: 5 }] }, { type: 1, u8: 1 }] },
  ]);
  assertEquals(encoded.length % 4, 0);
  const [index, size, backend, sockets] = decodeAttributes(encoded);
  assertEquals([index!.type, attributeNumber(index!)], [1, 7]);
  assertEquals([size!.type, attributeNumber(size!)], [2, 2 ** 40]);
  assertEquals(new TextDecoder().decode(backend!.payload), "dm-remap:abc\0");
  assertEquals(sockets!.type, 7, "the nested flag is masked off the type");
  const raw = new DataView(encoded.buffer).getUint16(
    encoded.length - sockets!.payload.length - 2,
    true,
  );
  assertEquals(raw & 0x8000, 0x8000, "the nested flag is set on the wire");
  const items = decodeAttributes(sockets!.payload);
  assertEquals(items.length, 2);
  assertEquals(attributeNumber(decodeAttributes(items[0]!.payload)[0]!), 5);
  assertEquals(attributeNumber(items[1]!), 1);
});
