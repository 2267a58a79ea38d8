// Edits of a migration blob for the refusal demos (layout in docs/migration-format.md):
// the core must refuse each edited blob and leave the target unchanged.

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** CRC-32 (IEEE), as crc32fast computes it. */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function skipVarint(b, i) {
  while (b[i] & 0x80) i++;
  return i + 1;
}

function varint(value) {
  const out = [];
  do {
    let byte = value & 0x7f;
    value >>>= 7;
    if (value) byte |= 0x80;
    out.push(byte);
  } while (value);
  return out;
}

function resealed(b) {
  const end = b.length - 4;
  new DataView(b.buffer).setUint32(end, crc32(b.subarray(0, end)), true);
  return b;
}

/** The blob with the guest's shared quota (payload field 8) set to `quota`, CRC redone. */
export function withQuota(blob, quota) {
  const b = Uint8Array.from(blob);
  let i = 16 + 1; // header, then width (u8)
  for (let k = 0; k < 4; k++) i = skipVarint(b, i); // local and shared ranges
  i += 2; // source and guest platform (u8 each)
  const end = skipVarint(b, i);
  const enc = varint(quota);
  if (enc.length !== end - i) throw new Error('the new quota needs another varint length');
  b.set(enc, i);
  return resealed(b);
}

/** The blob with one payload bit flipped and the old CRC kept. */
export function withFlippedBit(blob) {
  const b = Uint8Array.from(blob);
  b[17] ^= 0x01;
  return b;
}
