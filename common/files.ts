/**
 * Bounded file reading and output-path checks shared by every reader and writer (docs/limits.md).
 *
 * Every file dendra reads has a maximum size. Reads go through `readBounded`, which reads at most
 * max + 1 bytes, so a device that never ends (/dev/zero, a FIFO fed forever) or a huge file costs a
 * bounded amount of memory and time and ends in a typed error. Directories and other non-files are
 * refused by name. Error messages never quote the file's contents.
 */
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, statSync } from 'node:fs';
import { dirname, extname } from 'node:path';
import { DendraError, InputError, type ErrorWhere } from './errors.js';

/** Maximum sizes, bytes. Documented in docs/limits.md; change both together. */
export const LIMITS = {
  /** An ONNX model (.onnx), without its external data. */
  model: 1 << 30,
  /** One external data file of an ONNX model. */
  externalData: 2 ** 31 - 1,
  /** A .dendra artifact. */
  artifact: 1 << 30,
  /** A .npy array (inputs, labels, calibration samples). */
  npy: 2 ** 31 - 1,
  /** A device profile (JSON). */
  profile: 1 << 20,
  /** A defect map (JSON). */
  defectMap: 256 << 20,
} as const;

type ErrorClass = new (message: string, where?: ErrorWhere) => DendraError;

const mib = (n: number) => (n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(0)} MiB` : `${n} bytes`);

/**
 * Reads a whole file of at most `max` bytes. `what` names it in errors ("model file", "defect map").
 * Refuses directories, missing files and anything longer than `max` (read incrementally, so endless
 * character devices end too) with `Err`.
 */
export function readBounded(file: string, max: number, what: string, Err: ErrorClass = InputError): Buffer {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new Err(`cannot read ${what}: ${reason(e)}`, { file });
  }
  try {
    let size = 0;
    try {
      const st = fstatSync(fd);
      if (st.isDirectory()) throw new Err(`cannot read ${what}: it is a directory (EISDIR)`, { file });
      // Devices (/dev/zero, /dev/urandom, disks) and sockets are not files; pipes are read, bounded.
      if (st.isCharacterDevice() || st.isBlockDevice() || st.isSocket()) throw new Err(`cannot read ${what}: it is a device, not a file`, { file });
      if (st.isFile()) {
        if (st.size > max) throw new Err(`${what} is ${st.size} bytes, more than the ${mib(max)} dendra reads (docs/limits.md)`, { file });
        size = st.size;
      }
    } catch (e) {
      if (e instanceof DendraError) throw e;
      throw new Err(`cannot read ${what}: ${reason(e)}`, { file });
    }
    // Regular files: their size (a file that grows while read is still capped at max + 1 bytes).
    // Devices and pipes: chunks until EOF or max + 1 bytes.
    const chunks: Buffer[] = [];
    let total = 0;
    const step = Math.max(64 * 1024, Math.min(size + 1, 64 << 20));
    for (;;) {
      const want = Math.min(step, max + 1 - total);
      if (want <= 0) break;
      const buf = Buffer.allocUnsafe(want);
      let n: number;
      try {
        n = readSync(fd, buf, 0, want, null);
      } catch (e) {
        throw new Err(`cannot read ${what}: ${reason(e)}`, { file });
      }
      if (n === 0) break;
      chunks.push(n === want ? buf : buf.subarray(0, n));
      total += n;
    }
    if (total > max) throw new Err(`${what} is longer than the ${mib(max)} dendra reads (docs/limits.md)`, { file });
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
  } finally {
    closeSync(fd);
  }
}

/** Reads and parses a JSON file of at most `max` bytes; a parse error gives its position, never the text. */
export function readJsonBounded(file: string, max: number, what: string, Err: ErrorClass = InputError): unknown {
  const bytes = readBounded(file, max, what, Err);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new Err(`${what} is not valid JSON (not UTF-8 text)`, { file });
  }
  return parseJsonQuiet(text, what, Err, file);
}

/** JSON.parse whose error says where the text is broken without quoting it. */
export function parseJsonQuiet(text: string, what: string, Err: ErrorClass = InputError, file?: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    const m = /position (\d+)/.exec((e as Error).message);
    let at = '';
    if (m) {
      const pos = Number(m[1]);
      const before = text.slice(0, pos);
      const line = before.split('\n').length;
      at = ` at line ${line}, column ${pos - before.lastIndexOf('\n')}`;
    } else if (/Unexpected end/.test((e as Error).message)) {
      at = ' (it ends too early)';
    }
    throw new Err(`${what} is not valid JSON${at}`, file ? { file } : {});
  }
}

function reason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'EISDIR') return 'it is a directory (EISDIR)';
  return code ?? (e as Error)?.message ?? String(e);
}

/**
 * Checks an output path before anything is computed: its extension must be one of `extensions`
 * (e.g. ['.dendra']), and its folder must exist (dendra never creates directory trees).
 */
export function checkOutputPath(file: string, extensions: string[], option: string): void {
  const ext = extname(file).toLowerCase();
  if (!extensions.includes(ext)) {
    throw new InputError(`${option} ${file}: expected a file ending in ${extensions.join(' or ')}${ext ? `, not '${ext}'` : ''}`, { file });
  }
  const dir = dirname(file);
  if (!existsSync(dir)) throw new InputError(`${option} ${file}: the folder '${dir}' does not exist (dendra does not create folders)`, { file });
  if (!statSync(dir).isDirectory()) throw new InputError(`${option} ${file}: '${dir}' is not a folder`, { file });
  if (existsSync(file) && statSync(file).isDirectory()) throw new InputError(`${option} ${file} is a directory`, { file });
}

/**
 * An output folder (`--out DIR`, `data -o DIR`): made if missing, but only one level; its parent must exist
 * (dendra never creates folder trees). A path that names a file is refused.
 */
export function makeOutputFolder(dir: string, option: string): void {
  if (existsSync(dir)) {
    if (!statSync(dir).isDirectory()) throw new InputError(`${option} ${dir} is not a folder`, { file: dir });
    return;
  }
  const parent = dirname(dir);
  if (!existsSync(parent)) throw new InputError(`${option} ${dir}: the folder '${parent}' does not exist (dendra does not create folder trees)`, { file: dir });
  try {
    mkdirSync(dir);
  } catch (e) {
    throw new InputError(`${option} ${dir}: cannot create the folder: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { file: dir });
  }
}
