/**
 * A minimal PNG reader for tests: 8-bit RGB or RGBA, not interlaced, as
 * Chromium writes screenshots. It checks the signature and the chunk
 * layout, inflates the image data with the platform's `DecompressionStream`
 * and undoes the five scanline filters (PNG specification, section 9).
 *
 * @module
 */

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/** A decoded image: `rgba` holds 4 bytes per pixel, row by row. */
export interface Image {
  width: number;
  height: number;
  rgba: Uint8Array;
}

/**
 * Decodes a PNG.
 *
 * @throws {Error} For anything but 8-bit RGB(A), non-interlaced PNG.
 */
export async function decodePng(bytes: Uint8Array): Promise<Image> {
  if (!SIGNATURE.every((byte, i) => bytes[i] === byte)) throw new Error("not a PNG");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let width = 0, height = 0, channels = 0;
  const data: Uint8Array[] = [];
  for (let offset = 8; offset < bytes.length;) {
    const length = view.getUint32(offset);
    const type = new TextDecoder().decode(bytes.subarray(offset + 4, offset + 8));
    const body = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === "IHDR") {
      width = view.getUint32(offset + 8);
      height = view.getUint32(offset + 12);
      const [depth, colour, , , interlace] = body.subarray(8, 13);
      if (depth !== 8 || interlace !== 0 || (colour !== 2 && colour !== 6)) {
        throw new Error(
          `unsupported PNG: depth ${depth}, colour ${colour}, interlace ${interlace}`,
        );
      }
      channels = colour === 6 ? 4 : 3;
    } else if (type === "IDAT") data.push(body);
    else if (type === "IEND") break;
    offset += 12 + length;
  }
  const inflated = new Uint8Array(
    await new Response(
      new Blob(data as BlobPart[]).stream().pipeThrough(new DecompressionStream("deflate")),
    )
      .arrayBuffer(),
  );
  const stride = width * channels;
  if (inflated.length !== height * (stride + 1)) throw new Error("PNG data has the wrong length");
  const raw = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = inflated[y * (stride + 1)]!;
    const line = inflated.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? raw[y * stride + x - channels]! : 0;
      const b = y > 0 ? raw[(y - 1) * stride + x]! : 0;
      const c = x >= channels && y > 0 ? raw[(y - 1) * stride + x - channels]! : 0;
      raw[y * stride + x] = (line[x]! + predict(filter, a, b, c)) & 0xff;
    }
  }
  const rgba = new Uint8Array(width * height * 4);
  for (let i = 0; i < width * height; i++) {
    rgba.set(raw.subarray(i * channels, i * channels + 3), i * 4);
    rgba[i * 4 + 3] = channels === 4 ? raw[i * channels + 3]! : 255;
  }
  return { width, height, rgba };
}

function predict(filter: number, a: number, b: number, c: number): number {
  switch (filter) {
    case 0:
      return 0;
    case 1:
      return a;
    case 2:
      return b;
    case 3:
      return (a + b) >> 1;
    case 4: {
      const p = a + b - c;
      const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
    default:
      throw new Error(`unknown PNG filter ${filter}`);
  }
}

/** The pixel at (x, y) as `#rrggbb`. */
export function pixelAt(image: Image, x: number, y: number): string {
  const i = (y * image.width + x) * 4;
  return "#" +
    [...image.rgba.subarray(i, i + 3)].map((v) => v.toString(16).padStart(2, "0")).join("");
}
