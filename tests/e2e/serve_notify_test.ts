/**
 * `serve` as a systemd `Type=notify` service (systemd/dm-remap@.service).
 *
 * Goal: serve sends READY=1 with a STATUS= line carrying the remap count only once it serves,
 * and STOPPING=1 on SIGTERM; `serve --adopt` of a setup another server already serves (the root
 * storage daemon started in the initramfs) starts nothing and hands that server to the unit with
 * MAINPID=<its pid> and READY=1.
 * Method: setups on image files; a python receiver bound to a unix datagram socket, as systemd's
 * notify socket, prints every datagram; serve runs as a process with NOTIFY_SOCKET pointing at it.
 */

import assert from "node:assert/strict";
import { imageDirectory, runCli, startServe } from "./cli_process.ts";

const MIB = 1024 * 1024;
const SEPARATOR = "\n--\n";

const RECEIVER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("bound", flush=True)
while True:
    sys.stdout.write(s.recv(4096).decode() + ${JSON.stringify(SEPARATOR)})
    sys.stdout.flush()
`;

/** A receiver that collects datagrams until closed. */
async function notifySocket(path: string) {
  const child = new Deno.Command("python3", {
    args: ["-c", RECEIVER, path],
    stdout: "piped",
    stderr: "null",
  }).spawn();
  let text = "";
  const decoder = new TextDecoder();
  let bound!: () => void;
  const isBound = new Promise<void>((resolve) => bound = resolve);
  const reading = (async () => {
    for await (const chunk of child.stdout) {
      text += decoder.decode(chunk, { stream: true });
      if (text.startsWith("bound\n")) bound();
    }
  })();
  await isBound;
  return {
    messages: () =>
      text.slice("bound\n".length).split(SEPARATOR).filter((message) => message !== ""),
    async close() {
      child.kill("SIGKILL");
      await child.status;
      await reading;
    },
  };
}

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition(); waited += 50) {
    if (waited > 10_000) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

Deno.test("serve sends READY=1 with its status once serving, STOPPING=1 on SIGTERM, and --adopt hands a running server over", async () => {
  const images = await imageDirectory({ "sn-main.img": 64 * MIB, "sn-s0.img": 32 * MIB });
  const name = `sn${crypto.randomUUID().slice(0, 8)}`;
  const socketPath = `${images.path}/notify.sock`;
  const receiver = await notifySocket(socketPath);
  try {
    const created = await runCli([
      "create",
      name,
      "--main",
      images.file("sn-main.img"),
      "--spare",
      images.file("sn-s0.img"),
    ]);
    assert.equal(created.code, 0, created.stderr);
    const env = { NOTIFY_SOCKET: socketPath };
    const serve = await startServe([name, "--socket", `${images.path}/nbd.sock`], { env });
    await waitFor("READY=1", () => receiver.messages().length >= 1);
    assert.deepEqual(receiver.messages(), ["READY=1\nSTATUS=serving, 0 remaps, 0 pending"]);

    const adopted = await runCli(["serve", name, "--adopt"], { env });
    assert.equal(adopted.code, 0, adopted.stderr);
    assert.match(
      adopted.stdout,
      new RegExp(`already served by process ${serve.pid}; handed to the service manager`),
    );
    await waitFor("MAINPID=", () => receiver.messages().length >= 2);
    assert.equal(
      receiver.messages()[1],
      `MAINPID=${serve.pid}\nREADY=1\nSTATUS=adopted the server started before this unit (pid ${serve.pid})`,
    );

    serve.kill("SIGTERM");
    const stopped = await serve.finished();
    assert.equal(stopped.code, 0, stopped.stderr);
    await waitFor("STOPPING=1", () => receiver.messages().length >= 3);
    assert.match(receiver.messages()[2]!, /^STOPPING=1\nSTATUS=stopping/);

    // With no server left, --adopt serves itself; without NOTIFY_SOCKET nothing is sent.
    const again = await startServe([name, "--adopt", "--socket", `${images.path}/nbd.sock`]);
    again.kill("SIGTERM");
    assert.equal((await again.finished()).code, 0);
    assert.equal(receiver.messages().length, 3);
  } finally {
    await receiver.close();
    await images.cleanup();
  }
});
