import assert from "node:assert/strict";
import { utf8Length } from "./utf8.ts";

Deno.test("utf8Length agrees with TextEncoder", () => {
  const enc = new TextEncoder();
  for (
    const s of ["", "abc", "é", "€uro", "𝄞 clef", "\ud800 lone", "x\udc00", "日本語", "\ud800"]
  ) {
    assert.equal(utf8Length(s), enc.encode(s).length, JSON.stringify(s));
  }
});
