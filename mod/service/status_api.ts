/**
 * The status API of a running setup, as a {@link ServiceComponent}: the Hono
 * app over a {@link StatusSource}, listening where the settings say.
 *
 * @module
 */

import { createApp } from "../api/app.ts";
import { type ApiServer, serveApi } from "../api/http_server.ts";
import type { ScanControl, StatusSource } from "../api/status.ts";
import { assert } from "../assert.ts";
import type { ServiceComponent } from "./component.ts";
import type { ListenSettings } from "./settings.ts";

/** Serves the status API between {@link start} and {@link stop}. */
export class StatusApi implements ServiceComponent {
  readonly #source: StatusSource;
  readonly #settings: ListenSettings;
  readonly #scanControl: ScanControl | undefined;
  #server: ApiServer | undefined;

  constructor(
    source: StatusSource,
    settings: ListenSettings,
    options: { scanControl?: ScanControl } = {},
  ) {
    this.#source = source;
    this.#settings = settings;
    this.#scanControl = options.scanControl;
  }

  async start(): Promise<void> {
    this.#server = await serveApi(
      createApp(this.#source, { scanControl: this.#scanControl }),
      this.#settings,
    );
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
