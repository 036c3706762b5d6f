/**
 * groupIdOf(): a group by name from a group file, or a number as it is;
 * an unknown name or an impossible number is refused with the fix.
 * peerCredentials(): the kernel's record of who is at the other end.
 *
 * Method: a group file written to a temporary directory; a socketpair whose
 * peer is this process.
 */

import assert from "node:assert/strict";
import { UsageError } from "../../mod/errors.ts";
import { groupIdOf } from "../../mod/sys/group_id.ts";
import { closeDescriptor, createSocketPair, peerCredentials } from "../../mod/sys/syscalls.ts";

Deno.test("groupIdOf() reads a name from the group file and takes a number as it is", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/group`;
    await Deno.writeTextFile(path, "root:x:0:\nstorage:x:4321:alice,bob\nbroken:x:\n");
    assert.equal(await groupIdOf("storage", path), 4321);
    assert.equal(await groupIdOf("root", path), 0);
    assert.equal(await groupIdOf(7, path), 7);
    await assert.rejects(groupIdOf("nope", path), (error: Error) => {
      assert.ok(error instanceof UsageError);
      assert.equal(
        error.message,
        `Cannot find group "nope" in ${path}: create it (groupadd nope) or name another`,
      );
      return true;
    });
    await assert.rejects(groupIdOf("broken", path), UsageError);
    await assert.rejects(groupIdOf(-1, path), /a group number is from 0 to 4294967294/);
    await assert.rejects(groupIdOf(1.5, path), UsageError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("peerCredentials() gives the pid, uid, gid and groups of the socket's peer", () => {
  const pair = createSocketPair();
  assert.ok(typeof pair !== "number");
  try {
    const credentials = peerCredentials(pair[0]);
    assert.ok(typeof credentials !== "number", `errno ${credentials}`);
    assert.equal(credentials.pid, Deno.pid);
    assert.equal(credentials.uid, Deno.uid());
    assert.equal(credentials.gid, Deno.gid());
    assert.ok(Array.isArray(credentials.groups));
  } finally {
    closeDescriptor(pair[0]);
    closeDescriptor(pair[1]);
  }
});
