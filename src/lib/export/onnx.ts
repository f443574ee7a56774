/**
 * Writing ONNX graphs: a small builder over the ONNX protobuf messages (from onnx-proto) that names values, adds
 * nodes with typed attributes, keeps small constants inline and puts weights into an external data file that
 * several graphs can share (TensorProto.data_location = EXTERNAL with location/offset/length entries).
 */
import { promises as fsp } from 'node:fs';
import onnxProto from 'onnx-proto';

export const { onnx } = onnxProto;
export type ModelProto = onnxProto.onnx.ModelProto;
export type NodeProto = onnxProto.onnx.INodeProto;
export type TensorProto = onnxProto.onnx.ITensorProto;
export type ValueInfoProto = onnxProto.onnx.IValueInfoProto;

export const DType = { float: 1, uint8: 2, int8: 3, int32: 6, bool: 9, int64: 7 } as const;

/** Bytes per element of the types the exports hold as data. */
export const DTYPE_BYTES: Record<number, number> = { [DType.float]: 4, [DType.uint8]: 1, [DType.int8]: 1, [DType.int32]: 4, [DType.bool]: 1, [DType.int64]: 8 };
export type DTypeName = keyof typeof DType;

/** A dimension: a number, or the name of a symbolic dimension (batch_size, sequence_length, ...). */
export type Dim = number | string;

export const OPSET = 17;
/** IR version 8 (ONNX 1.10 to 1.12) carries opset 17. */
export const IR_VERSION = 8;

/** Weight data: float32, or int8 (quantized weights). */
export type WeightData = Float32Array | Int8Array;

/** Weights shared by the graphs of one export, laid out in one external data file (64-byte aligned). */
export class WeightStore {
  readonly entries = new Map<string, { dims: number[]; data: WeightData; offset: number }>();
  private size = 0;

  constructor(readonly location: string) {}

  /** Adds a weight once (by name) and returns its name. */
  add(name: string, data: WeightData, dims: number[]): string {
    if (!this.entries.has(name)) {
      const offset = Math.ceil(this.size / 64) * 64;
      this.entries.set(name, { dims, data, offset });
      this.size = offset + data.byteLength;
    }
    return name;
  }

  get byteLength(): number {
    return this.size;
  }

  /** Writes the external data file, one weight at a time (no copy of the whole model in memory). */
  async writeTo(file: string): Promise<void> {
    const fh = await fsp.open(file, 'w');
    try {
      for (const e of [...this.entries.values()].sort((a, b) => a.offset - b.offset)) {
        await fh.write(Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength), 0, e.data.byteLength, e.offset);
      }
      await fh.truncate(this.size);
    } finally {
      await fh.close();
    }
  }

  tensorProto(name: string): TensorProto {
    const e = this.entries.get(name)!;
    return {
      name,
      dims: e.dims,
      dataType: e.data instanceof Int8Array ? DType.int8 : DType.float,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: this.location },
        { key: 'offset', value: String(e.offset) },
        { key: 'length', value: String(e.data.byteLength) },
      ],
    };
  }
}

type AttrValue = number | number[] | string | { float: number };

function attribute(name: string, v: AttrValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: Buffer.from(v, 'utf8') };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if (typeof v === 'object') return { name, type: T.FLOAT, f: v.float };
  return { name, type: T.INT, i: v };
}

export function valueInfo(name: string, type: DTypeName, dims: Dim[]): ValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType: DType[type], shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/** Builds one graph; values are named by the builder (`prefix/op_n`) unless a name is given. */
export class GraphBuilder {
  readonly nodes: NodeProto[] = [];
  readonly inputs: ValueInfoProto[] = [];
  readonly outputs: ValueInfoProto[] = [];
  private readonly inline: TensorProto[] = [];
  private readonly external = new Set<string>();
  private readonly constants = new Map<string, string>();
  private n = 0;
  private readonly domains = new Set<string>();

  constructor(readonly name: string, readonly weights: WeightStore) {}

  input(name: string, type: DTypeName, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /**
   * Declares `value` as a graph output called `name`: the node that makes it is renamed (no Identity copy), unless
   * the value is a graph input or already an output under another name.
   */
  output(value: string, name: string, type: DTypeName, dims: Dim[]): void {
    const producer = this.nodes.find((n) => n.output?.includes(value));
    if (value !== name && producer && !this.outputs.some((o) => o.name === value)) {
      for (const n of this.nodes) {
        n.input = n.input?.map((x) => (x === value ? name : x));
        n.output = n.output?.map((x) => (x === value ? name : x));
      }
    } else if (value !== name) this.nodes.push({ opType: 'Identity', input: [value], output: [name], name: `${name}/identity` });
    this.outputs.push(valueInfo(name, type, dims));
  }

  weight(name: string, data: WeightData, dims: number[]): string {
    this.weights.add(name, data, dims);
    this.external.add(name);
    return name;
  }

  /** An integer constant, shared by value. */
  private integers(values: number[], scalar: boolean, type: 'int64' | 'int32'): string {
    const key = `${type}:${scalar ? 's' : 'v'}:${values.join(',')}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const/${this.constants.size}`;
      const raw = type === 'int64' ? Buffer.from(BigInt64Array.from(values, (v) => BigInt(v)).buffer) : Buffer.from(Int32Array.from(values).buffer);
      this.inline.push({ name, dims: scalar ? [] : [values.length], dataType: DType[type], rawData: raw });
      this.constants.set(key, name);
    }
    return name;
  }

  /** An int64 constant (shapes, axes, indices). */
  ints(values: number[], scalar = false): string {
    return this.integers(values, scalar, 'int64');
  }

  /** An int32 constant. */
  ints32(values: number[], scalar = false): string {
    return this.integers(values, scalar, 'int32');
  }

  /** A float32 constant (scalars by default); shared by value. */
  floats(values: number[], dims: number[] = []): string {
    const key = `f32:${dims.join('x')}:${values.join(',')}`;
    let name = this.constants.get(key);
    if (!name) {
      name = `const/${this.constants.size}`;
      this.inline.push({ name, dims, dataType: DType.float, rawData: Buffer.from(Float32Array.from(values).buffer) });
      this.constants.set(key, name);
    }
    return name;
  }

  /** Adds a node and returns its output names (one unless `outputs` > 1); `domain` for contrib operators. */
  op(type: string, inputs: string[], attrs: Record<string, AttrValue> = {}, outputs = 1, domain?: string): string[] {
    const id = `${type}_${this.n++}`;
    const out = Array.from({ length: outputs }, (_, i) => (outputs === 1 ? `${this.name}/${id}` : `${this.name}/${id}:${i}`));
    this.nodes.push({ opType: type, name: `${this.name}/${id}`, input: inputs, output: out, attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)), ...(domain ? { domain } : {}) });
    if (domain) this.domains.add(domain);
    return out;
  }

  /** A scalar int64 value as a 1-element vector (Slice bounds). */
  unsqueezed(scalar: string): string {
    return this.o('Unsqueeze', [scalar, this.ints([0])]);
  }

  /** One-output shorthand for op(). */
  o(type: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    return this.op(type, inputs, attrs)[0];
  }

  /** x / sqrt(mean(x^2) + eps) * weight over the last axis, the pattern onnxruntime fuses into SimplifiedLayerNormalization. */
  rmsNorm(x: string, weight: string, eps: number): string {
    const ms = this.o('ReduceMean', [this.o('Pow', [x, this.floats([2])])], { axes: [-1], keepdims: 1 }); // [.., 1]
    return this.o('Mul', [this.o('Div', [x, this.o('Sqrt', [this.o('Add', [ms, this.floats([eps])])])]), weight]);
  }

  /** (x - mean) / sqrt(var + eps) * weight + bias over the last axis. */
  layerNorm(x: string, weight: string, bias: string, eps: number): string {
    return this.o('LayerNormalization', [x, weight, bias], { axis: -1, epsilon: { float: eps } });
  }

  /** GELU: exact, 0.5 x (1 + erf(x / sqrt 2)), or the tanh approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
  gelu(x: string, approximate: 'none' | 'tanh'): string {
    const half = this.o('Mul', [x, this.floats([0.5])]);
    if (approximate === 'none') return this.o('Mul', [half, this.o('Add', [this.floats([1]), this.o('Erf', [this.o('Div', [x, this.floats([Math.SQRT2])])])])]);
    const x3 = this.o('Mul', [x, this.o('Mul', [x, x])]);
    const inner = this.o('Mul', [this.o('Add', [x, this.o('Mul', [x3, this.floats([0.044715])])]), this.floats([Math.sqrt(2 / Math.PI)])]);
    return this.o('Mul', [half, this.o('Add', [this.floats([1]), this.o('Tanh', [inner])])]);
  }

  model(docString: string, metadata: Record<string, string> = {}): ModelProto {
    const graph: onnxProto.onnx.IGraphProto = {
      name: this.name,
      node: this.nodes,
      input: this.inputs,
      output: this.outputs,
      initializer: [...this.inline, ...[...this.external].map((w) => this.weights.tensorProto(w))],
    };
    return onnx.ModelProto.create({
      irVersion: IR_VERSION,
      producerName: 'vlakit',
      producerVersion: '0.1.0',
      docString,
      opsetImport: [{ domain: '', version: OPSET }, ...[...this.domains].map((domain) => ({ domain, version: 1 }))],
      graph,
      metadataProps: Object.entries(metadata).map(([key, value]) => ({ key, value })),
    });
  }
}

export function encodeModel(m: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(m).finish();
}

export function decodeModel(bytes: Uint8Array): ModelProto {
  return onnx.ModelProto.decode(bytes);
}
