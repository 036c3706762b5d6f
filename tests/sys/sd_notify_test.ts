/**
 * sd_notify written in the project (`mod/sys/sd_notify.ts`).
 *
 * Goal: a notification reaches a real unix datagram socket, bound by another program (python's
 * socket module, as systemd binds its own), at a path or in the abstract namespace, byte for byte;
 * without NOTIFY_SOCKET nothing is sent; a socket that is not there is reported with its errno.
 * Method: a python receiver prints the one datagram it gets; the test compares it.
 */

import assert from "node:assert/strict";
import { notifyServiceManager } from "../../mod/sys/sd_notify.ts";

const RECEIVER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1].replace("@", "\\0", 1) if sys.argv[1].startswith("@") else sys.argv[1])
print("bound", flush=True)
s.settimeout(10)
sys.stdout.write(s.recv(4096).decode())
`;

/** Starts the receiver and waits until it has bound the socket. */
async function receiver(address: string) {
  const child = new Deno.Command("python3", {
    args: ["-c", RECEIVER, address],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.getReader();
  let text = "";
  while (!text.includes("bound\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the receiver exited: ${await new Response(child.stderr).text()}`);
    text += new TextDecoder().decode(value);
  }
  return async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    await child.status;
    await child.stderr.cancel();
    return text.slice(text.indexOf("bound\n") + 6);
  };
}

Deno.test("notifyServiceManager() sends one datagram to a socket path", async () => {
  const directory = await Deno.makeTempDir({ prefix: "dm-remap-notify-" });
  try {
    const path = `${directory}/notify.sock`;
    const received = await receiver(path);
    const message = "READY=1\nSTATUS=serving on /dev/nbd0, 3 remaps, 0 pending";
    assert.equal(notifyServiceManager(message, path), "sent");
    assert.equal(await received(), message);
  } finally {
    await Deno.remove(directory, { recursive: true });
  }
});

Deno.test("notifyServiceManager() reaches an abstract socket ('@' name), as systemd's own", async () => {
  const address = `@dm-remap-notify-test-${Deno.pid}`;
  const received = await receiver(address);
  assert.equal(notifyServiceManager("MAINPID=4242\nREADY=1", address), "sent");
  assert.equal(await received(), "MAINPID=4242\nREADY=1");
});

Deno.test("notifyServiceManager() sends nothing without NOTIFY_SOCKET and names a missing socket's errno", () => {
  assert.equal(notifyServiceManager("READY=1", undefined), "no-socket");
  assert.equal(notifyServiceManager("READY=1", ""), "no-socket");
  assert.deepEqual(notifyServiceManager("READY=1", "/nonexistent/dm-remap/notify.sock"), {
    errno: 2,
  });
});
