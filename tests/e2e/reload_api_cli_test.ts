/**
 * `POST /api/v1/reload` on a real `serve`.
 *
 * Goal: the reload endpoint does what SIGHUP does and says so: over the
 * Unix socket (as root) it applies the live keys at once (a new policy is
 * listed, the read retries and the allocation policy change) and names the changed key that needs a
 * restart; a file that does not check is answered 422 with its problems
 * and changes nothing; over TCP without the token, or with a wrong one, it
 * is refused (401) and nothing is reloaded; with the configured token it is
 * accepted.
 * Method: image files, `dm-remap create` and `serve --config` as processes,
 * HTTP requests over the API's socket and its TCP address, the status API's
 * event counts and policies, and serve's log lines.
 */

import assert from "node:assert/strict";
import type { ReloadOutcome } from "../../mod/api/control.ts";
import type { SetupStatus } from "../../mod/api/status.ts";
import { apiRequest } from "./api_request.ts";
import { imageDirectory, runCli, startServe } from "./cli_process.ts";

const MIB = 1024 * 1024;
const TOKEN = "reload-token-0123456789";

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

function configText(
  options: { readRetries: number; port: number; policy: boolean; allocation?: string },
): string {
  return `# written by reload_api_cli_test.ts
serve:
  read-retries: ${options.readRetries}
${options.allocation === undefined ? "" : `  allocation: ${options.allocation}\n`}  api:
    tcp: 127.0.0.1:${options.port}
    token: ${TOKEN}
${
    options.policy
      ? "policies:\n  pending:\n    when: { pending-blocks: 1 }\n    then: [alert]\n"
      : ""
  }`;
}

Deno.test("POST /api/v1/reload applies live keys over the socket, names restart keys, and refuses TCP without the token", async () => {
  const files = await imageDirectory({ "main.img": 8 * MIB, "spare.img": 32 * MIB });
  try {
    const configPath = files.file("dm-remap.yaml");
    const port = freePort();
    await Deno.writeTextFile(configPath, configText({ readRetries: 1, port, policy: false }));
    const spare = ["--spare", files.file("spare.img")];
    const created = await runCli([
      "create",
      "reloading",
      "--main",
      files.file("main.img"),
      ...spare,
    ]);
    assert.equal(created.code, 0, created.stderr);
    const api = files.file("api.sock");
    const serve = await startServe([
      "reloading",
      "--config",
      configPath,
      ...spare,
      "--socket",
      files.file("nbd.sock"),
      "--api-socket",
      api,
      "--events-db",
      files.file("events.sqlite"),
      "--no-smart",
    ]);
    const tcp = `http://127.0.0.1:${port}`;
    const reloads = async () =>
      ((await apiRequest(api, "/api/v1/status")).json as SetupStatus).events["config-reloaded"];
    let finished;
    try {
      // The new file: live changes, a new policy, and an address that needs a restart.
      const newConfig = { readRetries: 4, policy: true, allocation: "round-robin" };
      await Deno.writeTextFile(configPath, configText({ ...newConfig, port: freePort() }));
      const allocation = async () =>
        ((await apiRequest(api, "/api/v1/status")).json as SetupStatus).setup.allocation;
      assert.equal(await allocation(), "fill-first");
      // 1. Over TCP without the token, or with a wrong one: refused, nothing reloaded.
      for (const token of [undefined, "not-the-token-at-all"]) {
        const refused = await apiRequest(tcp, "/api/v1/reload", { method: "POST", token });
        assert.equal(refused.status, 401, refused.text);
        assert.match((refused.json as { error: string }).error, /^Cannot change the setup: /);
      }
      assert.equal(await reloads(), 0);
      assert.equal(
        ((await apiRequest(api, "/api/v1/policies")).json as { policies: [] }).policies.length,
        0,
      );

      // 2. Over the Unix socket as root: applied at once, the restart key named.
      const reloaded = await apiRequest(api, "/api/v1/reload", { method: "POST" });
      assert.equal(reloaded.status, 200, reloaded.text);
      const outcome = reloaded.json as ReloadOutcome;
      assert.deepEqual(outcome, {
        file: configPath,
        reloaded: true,
        applied: ["read-retries", "allocation", "policies.pending"],
        needsRestart: ["api.tcp"],
      });
      assert.equal(await reloads(), 1);
      assert.equal(await allocation(), "round-robin");
      const policies = (await apiRequest(api, "/api/v1/policies")).json as {
        policies: { name: string; holds: boolean }[];
      };
      assert.deepEqual(policies.policies.map((policy) => [policy.name, policy.holds]), [
        ["pending", false],
      ]);
      // The old TCP address still serves until a restart.
      const stillThere = await apiRequest(tcp, "/api/v1/health");
      assert.equal(stillThere.status, 200);

      // 3. A request with an option is refused: the reload takes none.
      const withOption = await apiRequest(api, "/api/v1/reload", {
        method: "POST",
        body: { force: true },
      });
      assert.equal(withOption.status, 400, withOption.text);

      // 4. A file that does not check: 422 with its problems, and nothing changes.
      await Deno.writeTextFile(configPath, "serve:\n  read-retries: lots\n");
      const invalid = await apiRequest(api, "/api/v1/reload", { method: "POST" });
      assert.equal(invalid.status, 422, invalid.text);
      const refusedOutcome = invalid.json as ReloadOutcome;
      assert.equal(refusedOutcome.reloaded, false);
      assert.match(
        refusedOutcome.problems!,
        new RegExp(`${configPath}:2:17: serve\\.read-retries: expected a whole number`),
      );
      assert.equal(await reloads(), 1);

      // 5. With the configured token over TCP: accepted; nothing changed since the last reload.
      await Deno.writeTextFile(configPath, configText({ ...newConfig, port: freePort() }));
      const withToken = await apiRequest(tcp, "/api/v1/reload", { method: "POST", token: TOKEN });
      assert.equal(withToken.status, 200, withToken.text);
      assert.deepEqual((withToken.json as ReloadOutcome).applied, []);
      assert.equal(await reloads(), 2);
    } finally {
      serve.kill("SIGTERM");
      finished = await serve.finished();
    }
    assert.equal(finished.code, 0, finished.stderr);
    assert.match(
      finished.stderr,
      /event=config-reloaded applied=read-retries,allocation,policies\.pending needs_restart=api\.tcp/,
    );
    assert.match(finished.stderr, /level=err setup=reloading event=config-rejected/);
  } finally {
    await files.cleanup();
  }
});
