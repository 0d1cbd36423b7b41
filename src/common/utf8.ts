/**
 * UTF-8 length of a string without encoding it: the bound checks on texts from outside
 * (payloads, filters, gossip envelopes) measure before they allocate or parse.
 *
 * @example
 * ```ts
 * utf8Length("€uro"); // 6, as new TextEncoder().encode("€uro").length
 * ```
 * @module
 */

/** UTF-8 bytes of `s` as TextEncoder writes them (a lone surrogate counts 3: U+FFFD). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}
