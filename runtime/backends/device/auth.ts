/**
 * Board access control: a shared token proved by challenge–response (docs/protocol.md, "Access control").
 * The token never crosses the wire; each side proves it knows it with an HMAC-SHA256 over both sides'
 * fresh random nonces, with a different label per direction (so one side's proof can never be replayed
 * as the other's):
 *
 *   host  → board   Auth {step: "hello", client: Nc}                       Nc: 32 random bytes, hex
 *   board → host    {server: Ns, mac: HMAC(token, "dendra-board|" Nc "|" Ns)}
 *   host  → board   Auth {step: "prove", mac: HMAC(token, "dendra-host|" Ns "|" Nc)}
 *   board → host    {ok: true}                                             the link is authenticated
 *
 * The host checks the board's proof before proving itself, so a host with a token never talks to a board
 * that does not know it. Until a link is authenticated, a board that requires a token answers every
 * other request with an 'unauthorized' error. Authentication is per link (per TCP connection).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { InputError } from '../../../common/errors.js';
import { readBounded } from '../../../common/files.js';

export const NONCE_BYTES = 32;
/** Longest token accepted (bytes). */
export const MAX_TOKEN_BYTES = 4096;
/** The environment variable a host reads its board token from when none is passed. */
export const TOKEN_ENV = 'DENDRA_BOARD_TOKEN';

export function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString('hex');
}

export function boardProof(token: string, clientNonce: string, serverNonce: string): string {
  return createHmac('sha256', token).update(`dendra-board|${clientNonce}|${serverNonce}`).digest('hex');
}

export function hostProof(token: string, serverNonce: string, clientNonce: string): string {
  return createHmac('sha256', token).update(`dendra-host|${serverNonce}|${clientNonce}`).digest('hex');
}

/** Constant-time comparison of two hex MACs. */
export function sameMac(a: unknown, b: string): boolean {
  if (typeof a !== 'string' || !/^[0-9a-f]{64}$/.test(a)) return false;
  return timingSafeEqual(Buffer.from(a, 'hex'), Buffer.from(b, 'hex'));
}

export function isNonce(x: unknown): x is string {
  return typeof x === 'string' && x.length === 2 * NONCE_BYTES && /^[0-9a-f]+$/.test(x);
}

/** Checks a token: non-empty, at most MAX_TOKEN_BYTES, no line breaks. */
export function checkToken(token: string, where: string): string {
  const t = token.replace(/\r?\n$/, '');
  if (t.length === 0) throw new InputError(`${where}: the board token is empty`);
  if (Buffer.byteLength(t) > MAX_TOKEN_BYTES) throw new InputError(`${where}: the board token is longer than ${MAX_TOKEN_BYTES} bytes`);
  if (/[\r\n]/.test(t)) throw new InputError(`${where}: the board token must be one line`);
  return t;
}

/** Reads a token file (one line); its contents never appear in an error. */
export function readTokenFile(file: string): string {
  return checkToken(readBounded(file, MAX_TOKEN_BYTES + 2, 'token file').toString('utf8'), file);
}
