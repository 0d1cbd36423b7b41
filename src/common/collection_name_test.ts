import assert from "node:assert/strict";
import { collectionNameProblem, isCollectionName } from "./collection_name.ts";

Deno.test("collection names: the one rule", () => {
  assert.equal(isCollectionName("glove-100_a"), true);
  assert.equal(isCollectionName("x".repeat(64)), true);
  assert.equal(isCollectionName("x".repeat(65)), false);
  assert.equal(isCollectionName(""), false);
  assert.equal(isCollectionName("a/b"), false);
  assert.equal(isCollectionName(".."), false);
  assert.equal(isCollectionName(7), false);
  assert.equal(collectionNameProblem("ok", "name"), null);
  assert.match(collectionNameProblem("a b", "collection")!, /^collection "a b" must be 1 to 64/);
  assert.match(collectionNameProblem("y".repeat(500), "name")!, /\.\.\. must be/);
});
