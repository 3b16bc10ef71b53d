/**
 * Byte links to a board: TCP (node:net) and serial lines (the `serialport` package, loaded only when a
 * serial URL is opened). A link carries bytes both ways and reports when it goes down; framing, ids,
 * timeouts and retries live in client.ts.
 *
 * URLs:
 *   tcp://HOST:PORT                     e.g. tcp://127.0.0.1:7070, tcp://[::1]:7070
 *   tcps://HOST:PORT                    TCP with TLS (node:tls): the board's certificate is checked against
 *                                       the system CAs or the PEM file named by DENDRA_BOARD_CA
 *   serial:///dev/ttyUSB0[?baud=N]      a serial device by path (default 115200 baud, 8N1, no flow control)
 *   serial://COM3[?baud=N]              a Windows port name
 */
import { createConnection, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { readBounded } from '../../../common/files.js';
import { DeviceError, InputError } from '../../../common/errors.js';

export type DeviceAddress =
  | { kind: 'tcp'; host: string; port: number; tls?: boolean }
  | { kind: 'serial'; path: string; baud: number };

export const DEFAULT_BAUD = 115200;

/** Parses a board URL; a malformed one is an InputError that says what forms are accepted. */
export function parseDeviceUrl(url: string): DeviceAddress {
  const forms = 'tcp://HOST:PORT, tcps://HOST:PORT or serial:///dev/ttyX[?baud=N]';
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InputError(`device '${url}' is not a URL; expected ${forms}`);
  }
  if (u.protocol === 'tcp:' || u.protocol === 'tcps:') {
    const scheme = u.protocol.slice(0, -1);
    const port = Number(u.port);
    if (!u.hostname || !u.port || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new InputError(`device '${url}' needs a host and a port from 1 to 65535: ${scheme}://HOST:PORT`);
    }
    if ((u.pathname && u.pathname !== '/') || u.search || u.username || u.password) throw new InputError(`device '${url}': a ${scheme}:// URL takes only HOST:PORT`);
    return { kind: 'tcp', host: u.hostname.replace(/^\[(.*)\]$/, '$1'), port, ...(scheme === 'tcps' ? { tls: true } : {}) };
  }
  if (u.protocol === 'serial:') {
    const path = decodeURIComponent(u.hostname ? u.hostname + u.pathname : u.pathname);
    if (!path || path === '/') throw new InputError(`device '${url}' names no serial port; expected serial:///dev/ttyX[?baud=N]`);
    let baud = DEFAULT_BAUD;
    for (const [key, value] of u.searchParams) {
      if (key !== 'baud') throw new InputError(`device '${url}': unknown serial option '${key}' (supported: baud)`);
      baud = Number(value);
      if (!Number.isInteger(baud) || baud < 50 || baud > 16_000_000) throw new InputError(`device '${url}': baud must be an integer from 50 to 16000000 (got '${value}')`);
    }
    return { kind: 'serial', path, baud };
  }
  throw new InputError(`device '${url}' has an unsupported scheme '${u.protocol}'; expected ${forms}`);
}

/** What a link tells its owner. */
export interface LinkHandlers {
  onData(chunk: Uint8Array): void;
  /** The link went down (peer closed, I/O error); not called after the owner's own close(). */
  onClose(reason: string): void;
}

/** An open byte link. */
export interface Link {
  /** Queues bytes; a failure shows up as onClose. */
  write(bytes: Uint8Array): void;
  /** Closes the link and resolves once its handle is released. Idempotent. */
  close(): Promise<void>;
  /** Seconds the link needs to carry `bytes` (0 for TCP): serial lines add it to request timeouts. */
  transferSeconds(bytes: number): number;
}

/** Opens a link to the address; rejects (with a short reason) when it cannot within `timeoutMs`. */
export function openLink(address: DeviceAddress, handlers: LinkHandlers, timeoutMs: number): Promise<Link> {
  return address.kind === 'tcp' ? openTcp(address.host, address.port, handlers, timeoutMs, address.tls === true) : openSerial(address.path, address.baud, handlers, timeoutMs);
}

/** The CA bundle for tcps:// links: DENDRA_BOARD_CA (a PEM file) if set, else Node's default CAs. */
function boardCa(): Buffer | undefined {
  const file = process.env['DENDRA_BOARD_CA'];
  return file ? readBounded(file, 1 << 20, 'board CA file (DENDRA_BOARD_CA)') : undefined;
}

function openTcp(host: string, port: number, handlers: LinkHandlers, timeoutMs: number, secure = false): Promise<Link> {
  const ca = secure ? boardCa() : undefined;
  return new Promise((resolve, reject) => {
    const socket: Socket = secure
      ? tlsConnect({ host, port, ca, servername: /^[\d.:]+$/.test(host) ? undefined : host, minVersion: 'TLSv1.2' })
      : createConnection({ host, port });
    let open = false;
    let closedByOwner = false;
    let reason = 'connection closed by the board';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      open = true;
      socket.setNoDelay(true);
      const closed = new Promise<void>((res) => socket.once('close', () => res()));
      resolve({
        write: (bytes) => {
          if (!socket.destroyed) socket.write(bytes);
        },
        close: async () => {
          closedByOwner = true;
          socket.destroy();
          await closed;
        },
        transferSeconds: () => 0,
      });
    });
    socket.on('data', (chunk: Buffer) => handlers.onData(chunk));
    socket.on('error', (e: NodeJS.ErrnoException) => {
      if (!open) {
        clearTimeout(timer);
        reject(new Error(e.code ? `connect ${e.code}` : e.message));
      } else {
        reason = e.code ?? e.message;
      }
    });
    socket.on('close', () => {
      if (open && !closedByOwner) handlers.onClose(reason);
    });
  });
}

type SerialPortClass = typeof import('serialport').SerialPort;
let serialPortClass: Promise<SerialPortClass> | undefined;

async function loadSerialPort(): Promise<SerialPortClass> {
  serialPortClass ??= import('serialport').then((m) => m.SerialPort);
  try {
    return await serialPortClass;
  } catch (e) {
    serialPortClass = undefined;
    throw new DeviceError(`serial links need the 'serialport' package, which did not load: ${(e as Error).message}`);
  }
}

async function openSerial(path: string, baud: number, handlers: LinkHandlers, timeoutMs: number): Promise<Link> {
  const SerialPort = await loadSerialPort();
  return new Promise((resolve, reject) => {
    const port = new SerialPort({ path, baudRate: baud, autoOpen: false });
    let open = false;
    let closedByOwner = false;
    let settled = false;
    let reason = 'serial port closed';
    const timer = setTimeout(() => {
      settled = true;
      if (port.isOpen) port.close(() => {});
      reject(new Error(`opening ${path} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    port.on('data', (chunk: Buffer) => handlers.onData(chunk));
    port.on('error', (e: Error) => {
      reason = e.message;
    });
    const closed = new Promise<void>((res) => port.once('close', () => res()));
    port.on('close', () => {
      if (open && !closedByOwner) handlers.onClose(reason);
    });
    port.open((err) => {
      if (settled) {
        if (!err) port.close(() => {});
        return;
      }
      settled = true;
      clearTimeout(timer);
      if (err) {
        reject(new Error(err.message.replace(/^Error: /, '')));
        return;
      }
      open = true;
      resolve({
        write: (bytes) => {
          if (port.isOpen) port.write(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
        },
        close: async () => {
          if (closedByOwner) return closed;
          closedByOwner = true;
          if (!port.isOpen) return;
          await new Promise<void>((res) => port.close(() => res()));
          await closed;
        },
        // 8N1: ten bits a byte.
        transferSeconds: (bytes) => (bytes * 10) / baud,
      });
    });
  });
}
