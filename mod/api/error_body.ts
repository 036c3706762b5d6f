/**
 * The body of every error answer of the API, shared by the app's error
 * handler and the middleware that answers by itself (the mutation guard).
 *
 * @module
 */

/** The body of every error answer: one sentence that names what failed and the fix. */
export interface ApiErrorBody {
  error: string;
}
