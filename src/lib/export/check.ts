/**
 * A structural check of an ONNX model, independent of onnxruntime: the default-domain opset is declared (>= 17),
 * names are unique, nodes are in topological order (every input produced before use), every graph output is
 * produced, external weights lie inside their data files with the right lengths, and shapes are consistent:
 * shapes are propagated through the graph with symbolic dimensions (polynomials over names such as
 * `sequence_length`), every broadcast, matmul, concat, split and reshape is checked, and the inferred shapes of
 * the graph outputs must equal the declared ones.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { DTYPE_BYTES, DType, type ModelProto, type TensorProto, type ValueInfoProto } from './onnx.js';

/** A dimension as a polynomial: monomial ("" for the constant, else sorted symbol names joined by *) -> coefficient. */
type Poly = Map<string, number>;

function poly(n: number): Poly {
  return n === 0 ? new Map() : new Map([['', n]]);
}

function sym(name: string): Poly {
  return new Map([[name, 1]]);
}

function norm(p: Poly): Poly {
  for (const [k, v] of p) if (v === 0) p.delete(k);
  return p;
}

function add(a: Poly, b: Poly, sign = 1): Poly {
  const out = new Map(a);
  for (const [k, v] of b) out.set(k, (out.get(k) ?? 0) + sign * v);
  return norm(out);
}

function mul(a: Poly, b: Poly): Poly {
  const out: Poly = new Map();
  for (const [ka, va] of a) {
    for (const [kb, vb] of b) {
      const k = [...ka.split('*'), ...kb.split('*')].filter(Boolean).sort().join('*');
      out.set(k, (out.get(k) ?? 0) + va * vb);
    }
  }
  return norm(out);
}

/** a / b when b is a single monomial that divides every term of a; else undefined. */
function div(a: Poly, b: Poly): Poly | undefined {
  if (b.size !== 1) return undefined;
  const [[kb, vb]] = [...b];
  const syms = kb.split('*').filter(Boolean);
  const out: Poly = new Map();
  for (const [ka, va] of a) {
    const rest = ka.split('*').filter(Boolean);
    for (const s of syms) {
      const i = rest.indexOf(s);
      if (i < 0) return undefined;
      rest.splice(i, 1);
    }
    if (va % vb !== 0) return undefined;
    out.set(rest.join('*'), va / vb);
  }
  return out;
}

/**
 * total / rest when rest is not a single term (e.g. a dimension such as sequence_length + 64): tries each input
 * dimension d, times or divided by a small integer k, as the quotient.
 */
function divideByGuess(total: Poly, rest: Poly, dims: Poly[]): Poly | undefined {
  for (const d of dims) {
    for (let k = 1; k <= 64; k++) {
      if (eq(mul(rest, mul(d, poly(k))), total)) return mul(d, poly(k));
      if ([...d.values()].every((c) => c % k === 0)) {
        const q: Poly = new Map([...d].map(([m, c]) => [m, c / k]));
        if (eq(mul(rest, q), total)) return q;
      }
    }
  }
  return undefined;
}

function eq(a: Poly, b: Poly): boolean {
  return add(a, b, -1).size === 0;
}

function constOf(p: Poly): number | undefined {
  if (p.size === 0) return 0;
  return p.size === 1 && p.has('') ? p.get('') : undefined;
}

function show(p: Poly): string {
  if (p.size === 0) return '0';
  return [...p].map(([k, v]) => (k === '' ? String(v) : v === 1 ? k : `${v}*${k}`)).join(' + ');
}

function sameShape(a: Poly[], b: Poly[]): boolean {
  return a.length === b.length && a.every((d, i) => eq(d, b[i]));
}

/** The shape of a (batched, broadcasting) matrix product of a [.., m, k] and b [.., k, n]. */
function matmulShape(op: string, a: Poly[], b: Poly[]): Poly[] {
  if (a.length < 2 || b.length < 2) throw new ShapeError(`${op} operands of rank < 2 are not checked`);
  if (!eq(a[a.length - 1], b[b.length - 2])) throw new ShapeError(`${op} inner dimensions differ: ${show(a[a.length - 1])} vs ${show(b[b.length - 2])}`);
  return [...broadcast([a.slice(0, -2), b.slice(0, -2)]), a[a.length - 2], b[b.length - 1]];
}

/** The two sides of a dimension named max(a, b) (as a decode step's present length), or undefined. */
function maxArgs(p: Poly): string[] | undefined {
  const m = p.size === 1 ? /^max\((.+), (.+)\)$/.exec([...p.keys()][0]) : null;
  return m && p.values().next().value === 1 ? [m[1], m[2]] : undefined;
}

/** Parses a dimension: a number, or a dim_param such as `past_sequence_length + sequence_length` or `2*batch`. */
function parseDim(d: { dimValue?: unknown; dimParam?: string | null }): Poly | undefined {
  if (d.dimParam) {
    let out: Poly = new Map();
    for (const term of d.dimParam.split('+')) {
      let t = poly(1);
      for (const f of term.split('*').map((s) => s.trim())) t = mul(t, /^\d+$/.test(f) ? poly(Number(f)) : sym(f));
      out = add(out, t);
    }
    return out;
  }
  if (d.dimValue !== undefined && d.dimValue !== null) return poly(Number(d.dimValue));
  return undefined;
}

interface Value {
  type: number;
  shape?: Poly[];
  /** The contents of small int64 tensors (shapes, axes, indices) when they are known. */
  value?: Poly[];
}

export interface CheckReport {
  graph: string;
  opset: number;
  nodes: number;
  initializers: number;
  externalBytes: number;
  ops: Record<string, number>;
  /** Graph outputs whose inferred shape was compared with the declared one. */
  outputsChecked: number;
  /** Graph outputs whose shape could not be inferred (downstream of an op the checker does not know). */
  outputsUnknown: string[];
  /** Ops whose shapes the checker does not infer (their outputs are not checked further). */
  unchecked: string[];
  problems: string[];
}

const ELEMENTWISE = new Set(['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Greater', 'Less', 'Equal']);
const UNARY = new Set(['Sqrt', 'Reciprocal', 'Tanh', 'Sigmoid', 'Softmax', 'Relu', 'Exp', 'Neg', 'Identity', 'Erf', 'Cast']);

class ShapeError extends Error {}

function broadcast(shapes: Poly[][]): Poly[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: Poly[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Poly = poly(1);
    for (const s of shapes) {
      const x = s[s.length - rank + i];
      if (!x || constOf(x) === 1) continue;
      if (constOf(d) === 1) d = x;
      else if (!eq(d, x)) throw new ShapeError(`cannot broadcast ${shapes.map((s2) => `[${s2.map(show).join(', ')}]`).join(' with ')}`);
    }
    out.push(d);
  }
  return out;
}

function numel(shape: Poly[]): Poly {
  return shape.reduce((a, d) => mul(a, d), poly(1));
}

function axisOf(a: number, rank: number): number {
  return a < 0 ? a + rank : a;
}

function attr(node: { attribute?: { name?: string | null; i?: unknown; ints?: unknown[] | null }[] | null }, name: string): { i?: number; ints?: number[] } | undefined {
  const a = node.attribute?.find((x) => x.name === name);
  if (!a) return undefined;
  return { i: a.i !== undefined && a.i !== null ? Number(a.i) : undefined, ints: a.ints ? a.ints.map(Number) : undefined };
}

function tensorValue(t: TensorProto): Value {
  const dims = (t.dims ?? []).map(Number);
  const v: Value = { type: t.dataType ?? 0, shape: dims.map((d) => poly(d)) };
  if (t.dataType === DType.int64 && t.rawData && t.rawData.length <= 8 * 64) {
    const raw = Buffer.from(t.rawData);
    v.value = Array.from({ length: raw.length / 8 }, (_, i) => poly(Number(raw.readBigInt64LE(i * 8))));
  } else if (t.dataType === DType.int64 && t.int64Data?.length) {
    v.value = t.int64Data.map((x) => poly(Number(x)));
  }
  return v;
}

function declared(vi: ValueInfoProto): Value {
  const tt = vi.type?.tensorType;
  const dims = tt?.shape?.dim;
  const shape = dims ? dims.map((d) => parseDim(d)) : undefined;
  return { type: tt?.elemType ?? 0, shape: shape && shape.every(Boolean) ? (shape as Poly[]) : undefined };
}

/** Shape (and small-value) inference for one node; throws ShapeError on an inconsistency. */
function infer(op: string, node: Parameters<typeof attr>[0] & { input?: string[] | null }, ins: (Value | undefined)[], nOut: number): (Value | undefined)[] | undefined {
  const s = (i: number) => ins[i]?.shape;
  const known = (i: number) => {
    const x = s(i);
    if (!x) throw new Unknown();
    return x;
  };
  const val = (i: number) => {
    const v = ins[i]?.value;
    if (!v) throw new Unknown();
    return v;
  };
  const nums = (i: number) =>
    val(i).map((p) => {
      const c = constOf(p);
      if (c === undefined) throw new Unknown();
      return c;
    });
  try {
    if (ins.some((v, i) => v === undefined && node.input?.[i])) throw new Unknown(); // downstream of an op not inferred
    if (ELEMENTWISE.has(op)) {
      const shape = broadcast(ins.map((_, i) => known(i)));
      const type = op === 'Greater' || op === 'Less' || op === 'Equal' ? DType.bool : ins[0]!.type;
      let value: Poly[] | undefined;
      if (ins[0]?.value && ins[1]?.value && ins[0].value.length === ins[1].value.length && (op === 'Add' || op === 'Sub' || op === 'Mul')) {
        value = ins[0].value.map((a, i) => (op === 'Mul' ? mul(a, ins[1]!.value![i]) : add(a, ins[1]!.value![i], op === 'Sub' ? -1 : 1)));
      }
      return [{ type, shape, value }];
    }
    if (UNARY.has(op)) return [{ ...ins[0]!, type: op === 'Cast' ? (attr(node, 'to')?.i ?? ins[0]!.type) : ins[0]!.type }];
    switch (op) {
      case 'Where':
        return [{ type: ins[1]!.type, shape: broadcast([known(0), known(1), known(2)]) }];
      case 'MatMul':
        return [{ type: ins[0]!.type, shape: matmulShape(op, known(0), known(1)) }];
      case 'Gemm': {
        const a = known(0);
        const b = known(1);
        const ta = attr(node, 'transA')?.i ?? 0;
        const tb = attr(node, 'transB')?.i ?? 0;
        if (a.length !== 2 || b.length !== 2) throw new ShapeError('Gemm takes 2-D operands');
        const [m, ka] = ta ? [a[1], a[0]] : [a[0], a[1]];
        const [kb, n] = tb ? [b[1], b[0]] : [b[0], b[1]];
        if (!eq(ka, kb)) throw new ShapeError(`Gemm inner dimensions differ: ${show(ka)} vs ${show(kb)}`);
        return [{ type: ins[0]!.type, shape: [m, n] }];
      }
      case 'ReduceMean':
      case 'ReduceSum': {
        const x = known(0);
        // ReduceMean (opset 17) takes axes as an attribute, ReduceSum (opset 13 on) as its second input
        const given = op === 'ReduceSum' ? (node.input?.[1] ? nums(1) : undefined) : attr(node, 'axes')?.ints?.map(Number);
        const axes = (given ?? x.map((_, i) => i)).map((a) => axisOf(a, x.length));
        const keep = (attr(node, 'keepdims')?.i ?? 1) === 1;
        return [{ type: ins[0]!.type, shape: x.flatMap((d, i) => (axes.includes(i) ? (keep ? [poly(1)] : []) : [d])) }];
      }
      case 'LayerNormalization': {
        const x = known(0);
        const w = known(1);
        if (!eq(w[w.length - 1], x[x.length - 1])) throw new ShapeError(`LayerNormalization scale ${show(w[w.length - 1])} does not match the normalized dimension ${show(x[x.length - 1])}`);
        return [{ type: ins[0]!.type, shape: x }];
      }
      case 'Reshape': {
        const x = known(0);
        const target = val(1); // constants, or dimensions computed from Shape
        const out: (Poly | undefined)[] = target.map((t, i) => (constOf(t) === 0 ? x[i] : constOf(t) === -1 ? undefined : t));
        const total = numel(x);
        const rest = numel(out.filter(Boolean) as Poly[]);
        const free = out.findIndex((d) => d === undefined);
        if (free >= 0) {
          const d = div(total, rest) ?? divideByGuess(total, rest, x);
          if (!d) throw new ShapeError(`Reshape cannot infer -1: ${show(total)} elements over ${show(rest)}`);
          out[free] = d;
        } else if (!eq(total, rest)) throw new ShapeError(`Reshape changes the element count: ${show(total)} -> ${show(rest)}`);
        return [{ type: ins[0]!.type, shape: out as Poly[] }];
      }
      case 'Transpose': {
        const x = known(0);
        const perm = attr(node, 'perm')?.ints ?? x.map((_, i) => x.length - 1 - i);
        if (perm.length !== x.length) throw new ShapeError(`Transpose perm of length ${perm.length} on a rank-${x.length} tensor`);
        return [{ type: ins[0]!.type, shape: perm.map((p) => x[p]) }];
      }
      case 'Split': {
        const x = known(0);
        const axis = axisOf(attr(node, 'axis')?.i ?? 0, x.length);
        const sizes = nums(1);
        if (sizes.length !== nOut) throw new ShapeError(`Split into ${sizes.length} parts with ${nOut} outputs`);
        if (!eq(poly(sizes.reduce((a, b) => a + b, 0)), x[axis])) throw new ShapeError(`Split sizes ${sizes.join('+')} do not add up to ${show(x[axis])}`);
        return sizes.map((n) => ({ type: ins[0]!.type, shape: x.map((d, i) => (i === axis ? poly(n) : d)) }));
      }
      case 'Concat': {
        const shapes = ins.map((_, i) => known(i));
        const rank = shapes[0].length;
        const axis = axisOf(attr(node, 'axis')?.i ?? 0, rank);
        const out = shapes[0].slice();
        out[axis] = poly(0);
        for (const sh of shapes) {
          if (sh.length !== rank) throw new ShapeError('Concat of tensors of different ranks');
          sh.forEach((d, i) => {
            if (i !== axis && !eq(d, shapes[0][i])) throw new ShapeError(`Concat operands differ on axis ${i}: ${show(d)} vs ${show(shapes[0][i])}`);
          });
          out[axis] = add(out[axis], sh[axis]);
        }
        const value = ins.every((v) => v?.value) ? ins.flatMap((v) => v!.value!) : undefined;
        return [{ type: ins[0]!.type, shape: out, value }];
      }
      case 'Slice': {
        const x = known(0);
        const starts = val(1); // constants, or positions computed from shapes
        const endPolys = val(2);
        const axes = ins[3] ? nums(3) : starts.map((_, i) => i);
        const out = x.slice();
        let value = ins[0]?.value;
        axes.forEach((a0, j) => {
          const a = axisOf(a0, x.length);
          const n = constOf(x[a]);
          const st = constOf(starts[j]);
          const en = constOf(endPolys[j]);
          if (en === undefined) {
            // a computed end: within the dimension when it is the dimension, or one side of a max() dimension;
            // a negative constant start would count from the end
            if (!eq(endPolys[j], x[a]) && !maxArgs(x[a])?.includes(show(endPolys[j]))) throw new Unknown();
            if (st !== undefined && st < 0) throw new Unknown();
            out[a] = add(endPolys[j], starts[j], -1);
            value = undefined;
          } else if (n !== undefined && st !== undefined) {
            const lo = Math.min(Math.max(st < 0 ? st + n : st, 0), n);
            const hi = Math.min(Math.max(en < 0 ? en + n : en, 0), n);
            out[a] = poly(Math.max(hi - lo, 0));
            if (value && x.length === 1) value = value.slice(lo, hi);
          } else if ((st === undefined || st >= 0) && en >= Number.MAX_SAFE_INTEGER) out[a] = add(x[a], starts[j], -1); // to the end
          else throw new Unknown();
        });
        return [{ type: ins[0]!.type, shape: out, value }];
      }
      case 'Gather': {
        const x = known(0);
        const idx = known(1);
        const axis = axisOf(attr(node, 'axis')?.i ?? 0, x.length);
        let value: Poly[] | undefined;
        if (ins[0]?.value && ins[1]?.value && x.length === 1) {
          const n = ins[0].value.length;
          value = nums(1).map((i) => ins[0]!.value![i < 0 ? i + n : i]);
        }
        return [{ type: ins[0]!.type, shape: [...x.slice(0, axis), ...idx, ...x.slice(axis + 1)], value }];
      }
      case 'Shape': {
        const x = known(0);
        return [{ type: DType.int64, shape: [poly(x.length)], value: x }];
      }
      case 'Range': {
        const [start] = val(0);
        const [limit] = val(1);
        if (constOf(val(2)[0]) !== 1) throw new Unknown();
        return [{ type: ins[0]!.type, shape: [add(limit, start, -1)] }];
      }
      case 'Unsqueeze': {
        const x = known(0);
        const axes = nums(1);
        const rank = x.length + axes.length;
        const out: Poly[] = [];
        let k = 0;
        const set = new Set(axes.map((a) => axisOf(a, rank)));
        for (let i = 0; i < rank; i++) out.push(set.has(i) ? poly(1) : x[k++]);
        return [{ type: ins[0]!.type, shape: out, value: ins[0]?.value }];
      }
      case 'SimplifiedLayerNormalization':
      case 'SkipSimplifiedLayerNormalization': {
        const x = known(0);
        const skip = op.startsWith('Skip') ? known(1) : undefined;
        const w = known(op.startsWith('Skip') ? 2 : 1);
        if (skip) broadcast([x, skip]);
        if (!eq(w[w.length - 1], x[x.length - 1])) throw new ShapeError(`${op} scale ${show(w[w.length - 1])} does not match the normalized dimension ${show(x[x.length - 1])}`);
        return Array.from({ length: nOut }, (_, j) => (j === 0 || j === 3 ? { type: ins[0]!.type, shape: x } : undefined));
      }
      case 'GroupQueryAttention': {
        const q = known(0);
        const H = attr(node, 'num_heads')?.i ?? 0;
        const KV = attr(node, 'kv_num_heads')?.i ?? 0;
        if (!H || !KV) throw new ShapeError('GroupQueryAttention without num_heads and kv_num_heads');
        if (H % KV !== 0) throw new ShapeError(`GroupQueryAttention: num_heads ${H} is not a multiple of kv_num_heads ${KV}`);
        const packed = !node.input?.[1]; // query holds q, k and v side by side
        if (packed && node.input?.[2]) throw new ShapeError('GroupQueryAttention: a value without a key (packed q, k, v take neither)');
        const hdp = div(q[2], poly(packed ? H + 2 * KV : H));
        if (!hdp) throw new ShapeError(`GroupQueryAttention: query width ${show(q[2])} is not ${packed ? `(num_heads ${H} + 2 x kv_num_heads ${KV})` : `num_heads ${H}`} x head size`);
        const hdc = constOf(hdp);
        if (hdc !== undefined && hdc % 8 !== 0) throw new ShapeError(`GroupQueryAttention: head size ${hdc} is not a multiple of 8, which onnxruntime requires`);
        if ((attr(node, 'do_rotary')?.i ?? 0) === 1) {
          if (hdc !== undefined && hdc % 16 !== 0) throw new ShapeError(`GroupQueryAttention: rotary embedding needs a head size that is a multiple of 16, not ${hdc}`);
          const cos = known(7);
          if (!eq(mul(cos[1], poly(2)), hdp)) throw new ShapeError(`GroupQueryAttention: cos cache width ${show(cos[1])} is not half the head size ${show(hdp)}`);
          if (!sameShape(known(8), cos)) throw new ShapeError('GroupQueryAttention: the sin and cos caches differ in shape');
        }
        if (!packed) {
          const k = known(1);
          if (!eq(k[2], mul(hdp, poly(KV)))) throw new ShapeError(`GroupQueryAttention: key width ${show(k[2])}, expected kv_num_heads ${KV} x head size ${show(hdp)}`);
          if (!eq(k[1], q[1])) throw new ShapeError('GroupQueryAttention: query and key lengths differ');
        }
        let total = q[1];
        if (ins[3]) {
          const pk = known(3);
          if (!eq(pk[1], poly(KV)) || !eq(pk[3], hdp)) throw new ShapeError(`GroupQueryAttention: past key [${pk.map(show).join(', ')}], expected [batch, ${KV}, past, ${show(hdp)}]`);
          // present is max(past buffer, total_sequence_length) long: past + new when the total is exactly that
          const given = ins[6]?.value?.[0];
          total = add(pk[2], q[1]);
          if (given && !eq(given, total)) total = sym(`max(${show(pk[2])}, ${show(given)})`);
        }
        const kvShape = [q[0], poly(KV), total, hdp];
        return [{ type: ins[0]!.type, shape: [q[0], q[1], mul(hdp, poly(H))] }, { type: ins[0]!.type, shape: kvShape }, { type: ins[0]!.type, shape: kvShape }];
      }
      case 'RotaryEmbedding': {
        const x = known(0);
        const heads = attr(node, 'num_heads')?.i ?? 0;
        if (!node.input?.[1]) throw new ShapeError('RotaryEmbedding without position_ids');
        const cos = known(2);
        if (!sameShape(known(3), cos)) throw new ShapeError('RotaryEmbedding: the sin and cos caches differ in shape');
        if (x.length !== 3 || !heads) throw new ShapeError('RotaryEmbedding is checked for [batch, sequence, heads x head size] inputs with num_heads');
        if (!eq(x[2], mul(cos[1], poly(2 * heads)))) throw new ShapeError(`RotaryEmbedding: width ${show(x[2])} is not num_heads ${heads} x twice the cos cache width ${show(cos[1])}`);
        return [{ type: ins[0]!.type, shape: x }];
      }
      case 'DynamicQuantizeLinear': {
        if (ins[0]!.type !== DType.float) throw new ShapeError('DynamicQuantizeLinear takes float32');
        return [{ type: DType.uint8, shape: known(0) }, { type: DType.float, shape: [] }, { type: DType.uint8, shape: [] }];
      }
      case 'MatMulInteger': {
        const [ta, tb] = [ins[0]!.type, ins[1]!.type];
        const int8s: number[] = [DType.uint8, DType.int8];
        if (!int8s.includes(ta) || !int8s.includes(tb)) throw new ShapeError('MatMulInteger takes 8-bit integer operands');
        return [{ type: DType.int32, shape: matmulShape(op, known(0), known(1)) }];
      }
      case 'Tile': {
        const x = known(0);
        const reps = nums(1);
        if (reps.length !== x.length) throw new ShapeError(`Tile with ${reps.length} repeats on a rank-${x.length} tensor`);
        return [{ type: ins[0]!.type, shape: x.map((d, i) => mul(d, poly(reps[i]))) }];
      }
      case 'Expand': {
        const target = val(1);
        return [{ type: ins[0]!.type, shape: broadcast([known(0), target]) }];
      }
      default:
        return undefined;
    }
  } catch (err) {
    if (err instanceof Unknown) return Array.from({ length: nOut }, () => undefined);
    throw err;
  }
}

class Unknown extends Error {}

/**
 * Checks a decoded model; `dir` is where its external data files live. Returns a report whose `problems` list is
 * empty when the model is sound.
 * @example const r = checkModel(decodeModel(readFileSync('prefill.onnx')), 'out/'); if (r.problems.length) ...
 */
export function checkModel(model: ModelProto, dir: string): CheckReport {
  const problems: string[] = [];
  const g = model.graph;
  const opsetEntry = model.opsetImport?.find((o) => !o.domain || o.domain === 'ai.onnx');
  const opset = opsetEntry ? Number(opsetEntry.version) : 0;
  const report: CheckReport = { graph: g?.name ?? '', opset, nodes: g?.node?.length ?? 0, initializers: g?.initializer?.length ?? 0, externalBytes: 0, ops: {}, outputsChecked: 0, outputsUnknown: [], unchecked: [], problems };
  if (!opsetEntry) problems.push('no opset is declared for the default ONNX domain');
  else if (opset < 17) problems.push(`opset ${opset} is declared; vlakit exports need opset 17 or later`);
  if (!model.irVersion) problems.push('the IR version is not set');
  if (!g) {
    problems.push('the model has no graph');
    return report;
  }
  const values = new Map<string, Value | undefined>();
  const define = (name: string, v: Value | undefined, what: string) => {
    if (values.has(name)) problems.push(`${what} "${name}" is defined twice`);
    values.set(name, v);
  };
  const sizes = new Map<string, number>();
  for (const t of g.initializer ?? []) {
    define(t.name ?? '', tensorValue(t), 'initializer');
    if (t.dataLocation === 1) {
      const kv = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]));
      const file = path.join(dir, kv.location ?? '');
      const offset = Number(kv.offset ?? 0);
      const length = Number(kv.length ?? -1);
      const expected = (t.dims ?? []).map(Number).reduce((a, b) => a * b, 1) * (DTYPE_BYTES[t.dataType ?? 0] ?? 0);
      if (!kv.location || !existsSync(file)) {
        problems.push(`initializer "${t.name}": external data file "${kv.location ?? ''}" is missing`);
        continue;
      }
      if (!sizes.has(file)) sizes.set(file, statSync(file).size);
      if (length !== expected) problems.push(`initializer "${t.name}": external length ${length} bytes, expected ${expected} for dims [${(t.dims ?? []).join(', ')}]`);
      if (offset + length > sizes.get(file)!) problems.push(`initializer "${t.name}": bytes ${offset}..${offset + length} lie beyond the end of ${kv.location} (${sizes.get(file)} bytes)`);
      report.externalBytes += Math.max(length, 0);
    }
  }
  for (const vi of g.input ?? []) {
    if (values.has(vi.name ?? '')) continue; // an input with a default (initializer) value
    define(vi.name ?? '', declared(vi), 'graph input');
  }
  for (const [i, node] of (g.node ?? []).entries()) {
    const op = node.opType ?? '';
    const where = `node ${i} (${op} "${node.name ?? ''}")`;
    report.ops[op] = (report.ops[op] ?? 0) + 1;
    if (node.domain && node.domain !== 'ai.onnx') {
      if (!model.opsetImport?.some((o) => o.domain === node.domain)) problems.push(`${where}: domain "${node.domain}" has no declared opset`);
    }
    const ins: (Value | undefined)[] = [];
    let missing = false;
    for (const name of node.input ?? []) {
      if (!name) {
        ins.push(undefined);
        continue;
      }
      if (!values.has(name)) {
        problems.push(`${where}: input "${name}" is not produced by any earlier node, initializer or graph input`);
        missing = true;
      }
      ins.push(values.get(name));
    }
    let outs: (Value | undefined)[] | undefined;
    if (!missing) {
      try {
        outs = infer(op, node, ins, node.output?.length ?? 0);
        if (!outs && !report.unchecked.includes(op)) report.unchecked.push(op);
      } catch (err) {
        if (!(err instanceof ShapeError)) throw err;
        problems.push(`${where}: ${err.message}`);
      }
    }
    (node.output ?? []).forEach((name, j) => name && define(name, outs?.[j], `value`)); // '' is an output not asked for
  }
  for (const vi of g.output ?? []) {
    const name = vi.name ?? '';
    if (!values.has(name)) {
      problems.push(`graph output "${name}" is not produced by any node`);
      continue;
    }
    const got = values.get(name);
    const want = declared(vi);
    if (!got?.shape || !want.shape) {
      report.outputsUnknown.push(name);
      continue;
    }
    report.outputsChecked += 1;
    if (got.type !== want.type) problems.push(`graph output "${name}": element type ${got.type}, declared ${want.type}`);
    if (got.shape.length !== want.shape.length) problems.push(`graph output "${name}": rank ${got.shape.length}, declared ${want.shape.length}`);
    else got.shape.forEach((d, k) => {
      if (!eq(d, want.shape![k])) problems.push(`graph output "${name}": dimension ${k} is ${show(d)}, declared ${show(want.shape![k])}`);
    });
  }
  return report;
}
