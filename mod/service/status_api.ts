/**
 * The status API of a running setup, as a {@link ServiceComponent}: the Hono
 * app over a {@link StatusSource} and a {@link SetupControl}, guarded by the
 * settings' token and socket group, listening where the settings say.
 *
 * @module
 */

import { createApp } from "../api/app.ts";
import type { SetupControl } from "../api/control.ts";
import { type ApiServer, serveApi } from "../api/http_server.ts";
import type { ScanControl, StatusSource } from "../api/status.ts";
import { assert } from "../assert.ts";
import { groupIdOf } from "../sys/group_id.ts";
import type { ServiceComponent } from "./component.ts";
import type { ApiSettings } from "./settings.ts";

/** Serves the status API between {@link start} and {@link stop}. */
export class StatusApi implements ServiceComponent {
  readonly #source: StatusSource;
  readonly #control: SetupControl;
  readonly #settings: ApiSettings;
  readonly #scanControl: ScanControl | undefined;
  #server: ApiServer | undefined;

  constructor(
    source: StatusSource,
    options: { control: SetupControl; settings: ApiSettings; scanControl?: ScanControl },
  ) {
    this.#source = source;
    this.#control = options.control;
    this.#settings = options.settings;
    this.#scanControl = options.scanControl;
  }

  /**
   * Resolves the socket group and starts listening.
   *
   * @throws {UsageError} When the group does not exist, or TCP is beyond loopback without a token.
   * @throws {ApiListenError} When an address cannot be bound.
   */
  async start(): Promise<void> {
    const { token, socketGroup, unixPath, tcp } = this.#settings;
    const socketGid = socketGroup === undefined ? undefined : await groupIdOf(socketGroup);
    const app = createApp(this.#source, {
      control: this.#control,
      scanControl: this.#scanControl,
      guard: { token, socketGid },
    });
    this.#server = await serveApi(app, {
      unixPath,
      tcp,
      socketGid,
      tokenConfigured: token !== undefined,
    });
  }

  /** Stops listening, waits for answers in progress, and removes the socket file. */
  async stop(): Promise<void> {
    await this.#running().close();
  }

  /** The socket path and the URL of each TCP address. */
  get addresses(): string[] {
    return this.#running().addresses.map((address) =>
      address.transport === "unix" ? address.path : address.url
    );
  }

  #running(): ApiServer {
    assert(this.#server !== undefined, "the status API has started");
    return this.#server;
  }
}
