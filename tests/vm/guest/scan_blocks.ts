/**
 * Guest helper of scenario_scan.sh (run with the guest's deno):
 *
 *   scan_blocks.ts write PATH NAME COUNT   a file of COUNT 4 KiB blocks; block i starts
 *                                          with "DMRSCAN-NAME-i:" and is random after it
 *   scan_blocks.ts locate DEVICE NAME COUNT  where those blocks lie on DEVICE: prints
 *                                          "START_SECTOR:SECTOR_COUNT" when they are one
 *                                          contiguous run in order; exits 1 otherwise
 *
 * The scenario finds a file's blocks on the main disk this way (the guest has no
 * filefrag or debugfs), so the slow and flaky regions it builds lie under file data.
 */

const BLOCK_BYTES = 4096;
const SECTOR_BYTES = 512;

function marker(name: string, index: number): Uint8Array {
  return new TextEncoder().encode(`DMRSCAN-${name}-${index}:`);
}

function startsWith(bytes: Uint8Array, offset: number, prefix: Uint8Array): boolean {
  for (let i = 0; i < prefix.length; i++) {
    if (bytes[offset + i] !== prefix[i]) return false;
  }
  return true;
}

async function write(path: string, name: string, count: number): Promise<void> {
  const data = new Uint8Array(count * BLOCK_BYTES);
  for (let offset = 0; offset < data.length; offset += 65536) {
    crypto.getRandomValues(data.subarray(offset, Math.min(data.length, offset + 65536)));
  }
  for (let index = 0; index < count; index++) data.set(marker(name, index), index * BLOCK_BYTES);
  await Deno.writeFile(path, data);
}

async function locate(device: string, name: string, count: number): Promise<void> {
  const first = marker(name, 0);
  const file = await Deno.open(device, { read: true });
  const chunk = new Uint8Array(1024 * 1024);
  let base = 0;
  let found: number | undefined;
  try {
    while (found === undefined) {
      const length = await readFull(file, chunk);
      if (length === 0) break;
      for (let offset = 0; offset + BLOCK_BYTES <= length; offset += BLOCK_BYTES) {
        if (startsWith(chunk, offset, first)) {
          found = base + offset;
          break;
        }
      }
      base += length;
    }
    if (found === undefined) throw new Error(`block 0 of "${name}" is not on ${device}`);
    const run = new Uint8Array(count * BLOCK_BYTES);
    await file.seek(found, Deno.SeekMode.Start);
    await readFull(file, run);
    for (let index = 0; index < count; index++) {
      if (!startsWith(run, index * BLOCK_BYTES, marker(name, index))) {
        throw new Error(`block ${index} of "${name}" does not follow block 0 at byte ${found}`);
      }
    }
  } finally {
    file.close();
  }
  console.log(`${found / SECTOR_BYTES}:${count * BLOCK_BYTES / SECTOR_BYTES}`);
}

async function readFull(file: Deno.FsFile, buffer: Uint8Array): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const read = await file.read(buffer.subarray(filled));
    if (read === null) break;
    filled += read;
  }
  return filled;
}

const [command, path, name, countText] = Deno.args;
const count = Number(countText);
if (!path || !name || !Number.isSafeInteger(count) || count < 1) {
  console.error("usage: scan_blocks.ts write|locate PATH NAME COUNT");
  Deno.exit(2);
}
if (command === "write") await write(path, name, count);
else if (command === "locate") await locate(path, name, count);
else {
  console.error(`unknown command "${command}"`);
  Deno.exit(2);
}
