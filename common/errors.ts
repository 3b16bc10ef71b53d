/**
 * Typed errors. Each carries where it happened so the CLI can print one line that names the problem.
 * Nothing else in dendra throws plain `Error` at a user.
 */
export type ErrorWhere = {
  file?: string;
  node?: string;
  op?: string;
  tensor?: string;
  array?: number;
  layer?: number;
};

/** Longest message kept (names taken from a file can be arbitrarily long). */
const MAX_MESSAGE = 1000;

/**
 * A message is one printable line: control characters (a newline in a node name read from a model) are
 * shown escaped, and a message longer than MAX_MESSAGE characters is cut.
 */
function oneLine(message: string): string {
  // eslint-disable-next-line no-control-regex
  const flat = message.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return flat.length > MAX_MESSAGE ? `${flat.slice(0, MAX_MESSAGE)}…` : flat;
}

export class DendraError extends Error {
  readonly where: ErrorWhere;
  constructor(message: string, where: ErrorWhere = {}) {
    super(oneLine(message));
    this.name = new.target.name;
    this.where = where;
  }
}

/** The ONNX model is unreadable, invalid or uses something dendra does not support. */
export class ModelError extends DendraError {}
/** A .dendra artifact is damaged, foreign or from an unsupported format version. */
export class ArtifactError extends DendraError {}
/** A device profile (JSON) is missing, malformed or out of range. */
export class ProfileError extends DendraError {}
/** Inputs handed to a session or the CLI (tensors, .npy files, options) are wrong. */
export class InputError extends DendraError {}
/** The native simulator or a device refused something. */
export class DeviceError extends DendraError {}
/** The link to a board failed (timeouts, damaged frames, disconnects) after the driver's retries. */
export class LinkError extends DeviceError {}
/** A job queue (Redis) cannot be reached, or a job of a distributed study failed on a worker. */
export class QueueError extends DendraError {}

/** `file: message` when the error knows its file and the message does not already name it. */
export function describe(err: unknown): string {
  if (err instanceof DendraError) {
    const file = err.where.file;
    return file && !err.message.includes(file) ? `${file}: ${err.message}` : err.message;
  }
  if (err instanceof Error) return err.message;
  return String(err);
}
