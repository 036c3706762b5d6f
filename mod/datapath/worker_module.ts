/**
 * The module this program's workers start from (connection, ublk queue and
 * probe workers all start from the program itself, named by their role).
 *
 * @module
 */

/**
 * The URL a worker of this program starts from. The deployed program is one
 * file (a bundle, `dist/dm-remap.js`): it is read into memory at the first
 * call, and every worker starts from that copy. A worker may start long
 * after the process did, when its file is gone or is another version: the
 * server of a root filesystem started from the initramfs no longer sees it
 * after switch_root (its root is the emptied initramfs), and an upgrade
 * replaces the file under a running server. Call it at startup (the NBD
 * export does, when it builds its data plane). From source (`main.ts`), workers need the
 * module graph's files: the main module's own URL.
 */
export function workerModuleUrl(): URL {
  programCopy ??= copyOfProgram(new URL(Deno.mainModule));
  return programCopy;
}

let programCopy: URL | undefined;
/**
 * `import.meta.url` as code, written as a pattern: the bundle holds this
 * module too, and a string of the same text would itself be replaced.
 */
const IMPORT_META_URL = /\bimport\.meta\.url\b/g;

function copyOfProgram(main: URL): URL {
  if (main.protocol !== "file:" || !main.pathname.endsWith(".js")) return main;
  // The copy sees the file's URL as its own: the bundle's prologue resolves
  // `node:` requires from it (createRequire accepts only file URLs).
  const text = Deno.readTextFileSync(main).replaceAll(IMPORT_META_URL, JSON.stringify(main.href));
  return new URL(URL.createObjectURL(new Blob([text], { type: "text/javascript" })));
}
