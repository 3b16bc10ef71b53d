/**
 * `dendra emulate`: a memristor test board with its own hidden physical state, behind the wire protocol,
 * on TCP or a virtual serial pair; runs until SIGINT/SIGTERM.
 */
import { loadDefectMap, type DefectPattern } from '../common/defects.js';
import { InputError } from '../common/errors.js';
import { readBounded } from '../common/files.js';
import { readTokenFile } from '../runtime/backends/device/auth.js';
import { loadProfile } from '../common/profile.js';
import { BoardEmulator, parseLinkFaults } from '../runtime/backends/device/emulator.js';

export interface EmulateArgs {
  listen?: string;
  pty?: string;
  device: string;
  defects?: string;
  faultRate?: string;
  onFraction?: string;
  pattern?: string;
  seed?: number;
  arrays?: number;
  linkFaults?: string;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
}

const fraction = (v: string, name: string) => {
  const x = Number(v);
  if (!(v.trim() !== '' && x >= 0 && x <= 1)) throw new InputError(`${name} must be a number from 0 to 1 (got '${v}')`);
  return x;
};

export async function emulateCommand(opts: EmulateArgs): Promise<void> {
  if ((opts.listen === undefined) === (opts.pty === undefined)) throw new InputError('give one of --listen tcp://HOST:PORT or --pty PATH');
  if (opts.defects !== undefined && opts.faultRate !== undefined) throw new InputError('give either --defects MAP.json or --fault-rate R, not both');
  if (opts.defects !== undefined && (opts.onFraction !== undefined || opts.pattern !== undefined)) throw new InputError('--on-fraction and --pattern go with --fault-rate, not with --defects');
  if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) throw new InputError('--tls-cert and --tls-key go together');
  if (opts.tlsCert !== undefined && !opts.listen?.startsWith('tcps://')) throw new InputError('--tls-cert and --tls-key serve --listen tcps://HOST:PORT');
  const tls = opts.tlsCert !== undefined ? { cert: readBounded(opts.tlsCert, 1 << 20, 'TLS certificate'), key: readBounded(opts.tlsKey!, 1 << 20, 'TLS key') } : undefined;
  const token = opts.tokenFile !== undefined ? readTokenFile(opts.tokenFile) : undefined;
  const profile = loadProfile(opts.device);
  const emulator = new BoardEmulator({
    profile,
    arrays: opts.arrays,
    defects: opts.defects !== undefined ? loadDefectMap(opts.defects) : undefined,
    faultRate: opts.faultRate !== undefined ? fraction(opts.faultRate, '--fault-rate') : undefined,
    onFraction: opts.onFraction !== undefined ? fraction(opts.onFraction, '--on-fraction') : undefined,
    pattern: opts.pattern as DefectPattern | undefined,
    seed: opts.seed ?? 0,
    linkFaults: opts.linkFaults !== undefined ? parseLinkFaults(opts.linkFaults) : undefined,
    token,
    tls,
  });
  const url = await emulator.listen(opts.pty !== undefined ? `pty:${opts.pty}` : opts.listen!);
  const stopped = new Promise<NodeJS.Signals>((res) => {
    process.once('SIGINT', () => res('SIGINT'));
    process.once('SIGTERM', () => res('SIGTERM'));
  });
  const host = /^tcps?:\/\/(.*):\d+$/.exec(url)?.[1] ?? '';
  const exposed = host !== '' && !/^(127\.|\[::1\]$|localhost$)/.test(host);
  console.log(`emulating ${profile.name} board: ${emulator.arrays} arrays of ${emulator.rows} × ${emulator.cols}, ${emulator.stuckCount} stuck cells, listening on ${url}` +
    `${token ? ' (token required)' : ''}`);
  if (exposed && !token) console.warn(`warning: ${url} is reachable from other machines and needs no token: anyone who reaches it can reprogram the board (--token-file)`);
  await stopped;
  await emulator.close();
}
