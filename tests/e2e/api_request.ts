/**
 * One HTTP request to a running server's status API, over its Unix socket
 * or TCP, as an operator's tool would send it: for end-to-end tests that
 * read answers the CLI does not print, or send mutations the CLI has no
 * command for.
 *
 * @module
 */

/** What the API answered. */
export interface ApiAnswer {
  status: number;
  /** The body parsed as JSON (undefined when it is not JSON). */
  json: unknown;
  text: string;
}

/** Options of {@link apiRequest}. */
export interface ApiRequestOptions {
  /** @default "GET" */
  method?: "GET" | "POST";
  /** A bearer token. @default none */
  token?: string;
  /** A JSON body. @default none */
  body?: unknown;
}

/**
 * Sends one request.
 *
 * @param target A Unix socket path, or a base URL (`http://127.0.0.1:PORT`).
 * @param path The route, e.g. `/api/v1/policies`.
 */
export async function apiRequest(
  target: string,
  path: string,
  options: ApiRequestOptions = {},
): Promise<ApiAnswer> {
  const overSocket = target.startsWith("/");
  const client = overSocket
    ? Deno.createHttpClient({ proxy: { transport: "unix", path: target } })
    : undefined;
  try {
    const response = await fetch(`${overSocket ? "http://localhost" : target}${path}`, {
      method: options.method ?? "GET",
      headers: {
        ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
        ...(options.body === undefined ? {} : { "content-type": "application/json" }),
      },
      ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
      ...(client === undefined ? {} : { client }),
    });
    const text = await response.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, json, text };
  } finally {
    client?.close();
  }
}
