/**
 * Slot orders for memory locality of a graph index, and the in-place permutation of row tables.
 *
 * Why: a layer-0 walk scores every unvisited neighbour of each expanded node, and each score
 * reads that neighbour's row (int8 codes with its mirrored links, or a float vector) at a
 * random address. Slots are handed out in insert order, so graph neighbours are usually far
 * apart in memory: almost every read misses the caches and the TLB. Renumbering the slots so
 * that neighbours get nearby numbers puts a walk's reads into fewer pages (and lets the
 * hardware prefetcher help), without changing the graph: the search visits the same nodes in
 * the same order and returns the same hits.
 *
 * Orders (`order[newSlot] = oldSlot`; slots in use first, free slots last in their old order):
 *
 * | kind  | how                                                                          |
 * |-------|------------------------------------------------------------------------------|
 * | `bfs` | breadth-first from the entry point over the layer-0 links, in list order       |
 * | `rcm` | reverse Cuthill-McKee: breadth-first from a least-linked node, neighbours in  |
 * |       | ascending degree (links out + links in), the whole order then reversed         |
 * | `dfs` | depth-first preorder from the entry point, in list order                       |
 *
 * Nodes the walk from the start does not reach (links are directed) start walks of their own,
 * in old slot order (`rcm`: in ascending degree). Every order is O(slots x links) time and
 * O(slots) memory.
 *
 * @example
 * ```ts
 * import { localityOrder } from "./reorder.ts";
 * // Three slots in rows of 1 + 2 words: 0 -> 2, 2 -> 1, 1 -> (none).
 * const links = new Uint32Array([1, 2, 0, 0, 0, 0, 1, 1, 0]);
 * const order = localityOrder({ n: 3, links, rowWords: 3, entry: 0, isFree: () => false }, "bfs");
 * console.log(Array.from(order)); // [0, 2, 1]
 * ```
 * @module
 */

/** The orders {@link localityOrder} computes. */
export const REORDER_KINDS = ["bfs", "rcm", "dfs", "groups"] as const;
export type ReorderKind = typeof REORDER_KINDS[number];

/** The order snapshots write slots in (fastest in the GloVe-100 measurements, README). */
export const DEFAULT_REORDER: ReorderKind = "groups";

/** Layer 0 of a graph as the index stores it: row `s` at `links[s * rowWords]`, count first. */
export interface SlotGraph {
  /** Slots in use or free: `0 .. n - 1`. */
  n: number;
  links: Uint32Array;
  rowWords: number;
  /** Start of the walk (the index's entry point), or -1 when the graph is empty. */
  entry: number;
  /** Free slots hold no point and no links: they go last. */
  isFree: (slot: number) => boolean;
}

/** The kind named by `value`; a RangeError quoting it when it is not one of {@link REORDER_KINDS}. */
export function parseReorderKind(value: string): ReorderKind {
  if ((REORDER_KINDS as readonly string[]).includes(value)) return value as ReorderKind;
  throw new RangeError(
    `reorder kind "${String(value).slice(0, 40)}" is not one of ${REORDER_KINDS.join(", ")}`,
  );
}

/** A permutation of `0 .. g.n - 1` (`order[newSlot] = oldSlot`) that puts neighbours near. */
export function localityOrder(g: SlotGraph, kind: ReorderKind): Int32Array {
  switch (parseReorderKind(kind)) {
    case "rcm":
      return rcmOrder(g);
    case "dfs":
      return dfsOrder(g);
    case "groups":
      return groupsOrder(g);
    default:
      return bfsOrder(g);
  }
}

/** The inverse permutation: `inv[oldSlot] = newSlot`. */
export function inversePermutation(order: Int32Array): Int32Array {
  const inv = new Int32Array(order.length);
  for (let i = 0; i < order.length; i++) inv[order[i]] = i;
  return inv;
}

/**
 * Whether `order` leaves every slot where it is. An index loaded from an image written in a
 * `bfs`, `dfs` or `groups` order gets the identity when it computes the same kind of order
 * again (the walk is a function of the graph and its entry point, and the renumbering keeps
 * both), until writes change the graph. (`rcm` breaks ties by slot number, so not always.)
 */
export function isIdentity(order: Int32Array): boolean {
  for (let i = 0; i < order.length; i++) if (order[i] !== i) return false;
  return true;
}

/** Throws unless `order` is a permutation of `0 .. n - 1`. */
export function checkPermutation(order: Int32Array, n: number): void {
  if (order.length !== n) {
    throw new RangeError(`slot order has ${order.length} entries; the index has ${n} slots`);
  }
  const seen = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const s = order[i];
    if (!(s >= 0 && s < n) || seen[s] === 1) {
      throw new RangeError(`slot order entry ${i} (${s}) is out of range or repeated`);
    }
    seen[s] = 1;
  }
}

/** Numbers still unplaced slots by walks of `walk`, from `entry` first, then in slot order. */
function fill(
  g: SlotGraph,
  walk: (start: number, order: Int32Array, at: number, placed: Uint8Array) => number,
): Int32Array {
  const order = new Int32Array(g.n);
  const placed = new Uint8Array(g.n);
  let at = 0;
  if (g.entry >= 0 && !g.isFree(g.entry)) at = walk(g.entry, order, at, placed);
  for (let s = 0; s < g.n; s++) {
    if (placed[s] === 0 && !g.isFree(s)) at = walk(s, order, at, placed);
  }
  return appendFree(g, order, at, placed);
}

/** Appends the free slots (everything not yet placed) in old slot order. */
function appendFree(g: SlotGraph, order: Int32Array, at: number, placed: Uint8Array): Int32Array {
  for (let s = 0; s < g.n; s++) if (placed[s] === 0) order[at++] = s;
  return order;
}

function bfsOrder(g: SlotGraph): Int32Array {
  const { links, rowWords } = g;
  // The order array is the queue: the walk numbers nodes in the order it reaches them.
  return fill(g, (start, order, at, placed) => {
    let head = at;
    placed[start] = 1;
    order[at++] = start;
    while (head < at) {
      const off = order[head++] * rowWords;
      const cnt = links[off];
      for (let j = 1; j <= cnt; j++) {
        const n = links[off + j];
        if (placed[n] === 0) {
          placed[n] = 1;
          order[at++] = n;
        }
      }
    }
    return at;
  });
}

function dfsOrder(g: SlotGraph): Int32Array {
  const { links, rowWords } = g;
  // Explicit stack of (node, next link index): each node is on it at most once, so n entries.
  const stackNode = new Int32Array(g.n);
  const stackNext = new Int32Array(g.n);
  return fill(g, (start, order, at, placed) => {
    let top = 0;
    placed[start] = 1;
    order[at++] = start;
    stackNode[0] = start;
    stackNext[0] = 1;
    while (top >= 0) {
      const x = stackNode[top];
      const off = x * rowWords;
      const cnt = links[off];
      let j = stackNext[top];
      while (j <= cnt && placed[links[off + j]] === 1) j++;
      if (j > cnt) {
        top--;
        continue;
      }
      stackNext[top] = j + 1;
      const n = links[off + j];
      placed[n] = 1;
      order[at++] = n;
      top++;
      stackNode[top] = n;
      stackNext[top] = 1;
    }
    return at;
  });
}

function groupsOrder(g: SlotGraph): Int32Array {
  const { links, rowWords } = g;
  // Stack of ranges of `order` whose nodes are still to be expanded (each range is one
  // expansion's group); at most one range per node.
  const stackNext = new Int32Array(g.n + 1);
  const stackEnd = new Int32Array(g.n + 1);
  return fill(g, (start, order, at, placed) => {
    placed[start] = 1;
    order[at] = start;
    let top = 0;
    stackNext[0] = at++;
    stackEnd[0] = at;
    while (top >= 0) {
      if (stackNext[top] === stackEnd[top]) {
        top--;
        continue;
      }
      const off = order[stackNext[top]++] * rowWords;
      const cnt = links[off];
      const first = at;
      for (let j = 1; j <= cnt; j++) {
        const n = links[off + j];
        if (placed[n] === 0) {
          placed[n] = 1;
          order[at++] = n;
        }
      }
      if (at > first) {
        top++;
        stackNext[top] = first;
        stackEnd[top] = at;
      }
    }
    return at;
  });
}

/**
 * How near linked slots lie in an order: the fraction of the layer-0 links whose two ends are
 * fewer than `w` positions apart, for each `w` of `windows` (`order` null: the slots as they
 * are).
 */
export function linkSpans(g: SlotGraph, order: Int32Array | null, windows: number[]): number[] {
  const pos = order === null ? null : inversePermutation(order);
  const within = windows.map(() => 0);
  let total = 0;
  for (let s = 0; s < g.n; s++) {
    const off = s * g.rowWords;
    const cnt = g.links[off];
    const ps = pos === null ? s : pos[s];
    for (let j = 1; j <= cnt; j++) {
      const t = g.links[off + j];
      const gap = Math.abs((pos === null ? t : pos[t]) - ps);
      for (let i = 0; i < windows.length; i++) if (gap < windows[i]) within[i]++;
      total++;
    }
  }
  return within.map((x) => (total === 0 ? 0 : x / total));
}

function rcmOrder(g: SlotGraph): Int32Array {
  const { n, links, rowWords } = g;
  // Degree = links out + links in, capped (only its rank matters, and a counting sort needs a
  // small range).
  const DEG_MAX = 1023;
  const deg = new Uint16Array(n);
  for (let s = 0; s < n; s++) {
    const off = s * rowWords;
    const cnt = links[off];
    deg[s] = Math.min(DEG_MAX, deg[s] + cnt);
    for (let j = 1; j <= cnt; j++) {
      const t = links[off + j];
      if (deg[t] < DEG_MAX) deg[t]++;
    }
  }
  // Walk starts in ascending degree (counting sort: stable, so ties keep slot order).
  const bucket = new Int32Array(DEG_MAX + 2);
  for (let s = 0; s < n; s++) bucket[deg[s] + 1]++;
  for (let d = 1; d <= DEG_MAX + 1; d++) bucket[d] += bucket[d - 1];
  const starts = new Int32Array(n);
  for (let s = 0; s < n; s++) starts[bucket[deg[s]]++] = s;
  const order = new Int32Array(n);
  const placed = new Uint8Array(n);
  const nb = new Int32Array(rowWords);
  let at = 0;
  for (let i = 0; i < n; i++) {
    const start = starts[i];
    if (placed[start] === 1 || g.isFree(start)) continue;
    let head = at;
    placed[start] = 1;
    order[at++] = start;
    while (head < at) {
      const off = order[head++] * rowWords;
      const cnt = links[off];
      // The unplaced neighbours, sorted by degree (insertion sort: at most 2M of them).
      let m = 0;
      for (let j = 1; j <= cnt; j++) {
        const x = links[off + j];
        if (placed[x] === 1) continue;
        placed[x] = 1;
        let p = m++;
        while (p > 0 && deg[nb[p - 1]] > deg[x]) {
          nb[p] = nb[p - 1];
          p--;
        }
        nb[p] = x;
      }
      for (let j = 0; j < m; j++) order[at++] = nb[j];
    }
  }
  order.subarray(0, at).reverse();
  return appendFree(g, order, at, placed);
}

/**
 * Copies rows `order[from] .. order[to - 1]` of a table of u32 words (row `s` is `width`
 * words at `src[base + s * stride]`) into `out`, packed, in that order; with `inv`, each row
 * is a link list (count, then slots) and its slots are renumbered through `inv` (words past
 * the count are copied as they are). Element loops, so nothing is allocated per row.
 */
export function gatherRows(
  src: Uint32Array,
  base: number,
  stride: number,
  width: number,
  order: Int32Array,
  from: number,
  to: number,
  out: Uint32Array,
  inv: Int32Array | null,
): void {
  let o = 0;
  for (let i = from; i < to; i++) {
    const b = base + order[i] * stride;
    for (let w = 0; w < width; w++) out[o + w] = src[b + w];
    if (inv !== null) {
      const cnt = out[o];
      for (let j = 1; j <= cnt; j++) out[o + j] = inv[out[o + j]];
    }
    o += width;
  }
}

/** Any array of numbers a row table lives in (typed arrays over plain or shared memory). */
type RowArray = Uint8Array | Uint32Array | Int32Array | Float32Array;

/**
 * Moves the rows of a table in place so that row `i` afterwards holds what row `order[i]` held
 * (rows `0 .. order.length - 1`): row `s` is `width` elements at `data[base + s * stride]`.
 * Follows the permutation's cycles with one row of scratch, so no second table is allocated
 * (the tables may be large, and may be shared memory other code holds views of). `done` is
 * scratch of at least `order.length` bytes; it is cleared here.
 */
export function permuteRows(
  data: RowArray,
  base: number,
  stride: number,
  width: number,
  order: Int32Array,
  done: Uint8Array,
): void {
  const n = order.length;
  done.fill(0, 0, n);
  // deno-lint-ignore no-explicit-any
  const tmp = new (data.constructor as any)(width) as RowArray;
  for (let start = 0; start < n; start++) {
    if (done[start] === 1) continue;
    if (order[start] === start) {
      done[start] = 1;
      continue;
    }
    const s0 = base + start * stride;
    for (let w = 0; w < width; w++) tmp[w] = data[s0 + w];
    let j = start;
    for (;;) {
      done[j] = 1;
      const k = order[j];
      const dst = base + j * stride;
      if (k === start) {
        for (let w = 0; w < width; w++) data[dst + w] = tmp[w];
        break;
      }
      const src = base + k * stride;
      for (let w = 0; w < width; w++) data[dst + w] = data[src + w];
      j = k;
    }
  }
}
