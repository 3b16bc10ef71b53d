/**
 * A fuzz worker: a child process that runs inputs of one target on request (IPC) and answers with the
 * outcome. The runner (run.ts) classifies a worker that dies as a crash and one that does not answer in
 * time as a hang, and starts a fresh worker.
 */
import { classify } from './classify.js';
import { targetByName } from './targets.js';

const target = targetByName(process.argv[2] ?? '');
if (!target) {
  process.stderr.write(`fuzz worker: unknown target '${process.argv[2]}'\n`);
  process.exit(2);
}

process.on('message', (msg: { id: number; input: Uint8Array }) => {
  void classify(() => target.run(msg.input)).then((r) => process.send!({ id: msg.id, ...r }));
});
// A rejection or exception that escapes a run (a timer callback, a socket handler) is an untyped error of
// whatever input is running: report it as such rather than die.
process.on('uncaughtException', (e) => process.send!({ id: -1, outcome: 'untyped', detail: `uncaught ${(e as Error).name}: ${(e as Error).message}` }));
process.on('unhandledRejection', (e) => process.send!({ id: -1, outcome: 'untyped', detail: `unhandled rejection: ${String((e as Error)?.message ?? e)}` }));
process.send!({ id: 0, outcome: 'accepted', detail: 'ready' });
