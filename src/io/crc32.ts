/**
 * CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320, initial value and final xor 0xFFFFFFFF),
 * the checksum used by every on-disk format in this project (WAL records, segment headers,
 * snapshot trailers).
 *
 * The implementation is slicing-by-8: eight 256-entry tables computed once at module load, so the
 * hot loop consumes eight bytes per iteration with eight table lookups.
 *
 * Incremental use: `crc32(b, crc32(a))` equals `crc32(concat(a, b))`. The seed is the finished
 * CRC of the preceding bytes (not the internal register), so a seed of 0 means "no bytes yet".
 * @module
 */

/** The reflected IEEE polynomial. */
export const CRC32_POLYNOMIAL = 0xEDB88320;

/** Eight consecutive 256-entry tables: `TABLES[k * 256 + n]`. */
const TABLES: Uint32Array = buildTables();

function buildTables(): Uint32Array {
  const t = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ CRC32_POLYNOMIAL : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n];
    for (let k = 1; k < 8; k++) {
      c = (c >>> 8) ^ t[c & 0xff];
      t[k * 256 + n] = c >>> 0;
    }
  }
  return t;
}

/**
 * Computes the CRC-32 of `bytes`, continuing from `seed` (the CRC of the bytes that precede
 * these; 0 for none). Returns an unsigned 32-bit integer.
 */
export function crc32(bytes: Uint8Array, seed = 0): number {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
    throw new RangeError(`CRC-32 seed ${seed} is not an unsigned 32-bit integer`);
  }
  const t = TABLES;
  let c = ~seed;
  let i = 0;
  const n = bytes.length;
  const end8 = n - (n & 7);
  while (i < end8) {
    const a = c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24));
    const b = bytes[i + 4] | (bytes[i + 5] << 8) | (bytes[i + 6] << 16) | (bytes[i + 7] << 24);
    c = t[1792 + (a & 0xff)] ^ t[1536 + ((a >>> 8) & 0xff)] ^ t[1280 + ((a >>> 16) & 0xff)] ^
      t[1024 + (a >>> 24)] ^ t[768 + (b & 0xff)] ^ t[512 + ((b >>> 8) & 0xff)] ^
      t[256 + ((b >>> 16) & 0xff)] ^ t[b >>> 24];
    i += 8;
  }
  while (i < n) {
    c = (c >>> 8) ^ t[(c ^ bytes[i]) & 0xff];
    i++;
  }
  return ~c >>> 0;
}
