/** Tensor, shaped like onnxruntime-common's: `new Tensor(type, data, dims)`. */
import { InputError } from '../common/errors.js';

export type TensorType = 'float32' | 'float16' | 'float64' | 'uint8';
type DataFor<T extends TensorType> = T extends 'float32' ? Float32Array : T extends 'float64' ? Float64Array : T extends 'float16' ? Uint16Array : Uint8Array;

const ctor = { float32: Float32Array, float64: Float64Array, float16: Uint16Array, uint8: Uint8Array } as const;

export class Tensor<T extends TensorType = TensorType> {
  readonly type: T;
  readonly data: DataFor<T>;
  readonly dims: readonly number[];
  readonly size: number;

  constructor(type: T, data: DataFor<T> | number[], dims?: readonly number[]);
  constructor(data: Float32Array, dims?: readonly number[]);
  constructor(a: T | Float32Array, b?: DataFor<T> | number[] | readonly number[], c?: readonly number[]) {
    let type: TensorType;
    let data: ArrayLike<number>;
    let dims: readonly number[] | undefined;
    if (a instanceof Float32Array) {
      type = 'float32';
      data = a;
      dims = b as readonly number[] | undefined;
    } else {
      type = a;
      if (!(type in ctor)) throw new InputError(`Tensor type '${String(type)}' is not supported (float32, float16, float64, uint8)`);
      const C = ctor[type];
      data = Array.isArray(b) ? C.from(b as number[]) : (b as ArrayLike<number>);
      if (!(data instanceof C)) throw new InputError(`Tensor of type ${type} needs a ${C.name} (got ${data?.constructor?.name ?? typeof data})`);
      dims = c;
    }
    const resolved = dims ?? [data.length];
    if (!resolved.every((d) => Number.isInteger(d) && d >= 0)) throw new InputError(`Tensor dims [${resolved.join(', ')}] must be non-negative integers`);
    const size = resolved.reduce((x, y) => x * y, 1);
    if (size !== data.length) throw new InputError(`Tensor dims [${resolved.join(', ')}] hold ${size} elements but the data has ${data.length}`);
    this.type = type as T;
    this.data = data as DataFor<T>;
    this.dims = Object.freeze([...resolved]);
    this.size = size;
  }
}
