/**
 * The kinds of study a driver, a shard or a worker can compute, by name (the job name on the queue).
 * A new kind is one more entry: a StudyHandler (sweep/study.ts).
 */
import { InputError } from '../common/errors.js';
import { faultRateHandler } from './fault-rate.js';
import { paramHandler } from './param.js';
import { trainHandler } from './train.js';
import type { StudyHandler } from './study.js';

const HANDLERS = new Map<string, StudyHandler>([
  [faultRateHandler.kind, faultRateHandler],
  [paramHandler.kind, paramHandler],
  [trainHandler.kind, trainHandler],
]);

export function handlerFor(kind: string): StudyHandler {
  const h = HANDLERS.get(kind);
  if (!h) throw new InputError(`unknown kind of study '${kind}'; this dendra computes ${[...HANDLERS.keys()].join(', ')}`);
  return h;
}

/**
 * Adds a kind of study to this process (the module that defines it calls this once): drivers, shards and
 * workers then run it. A worker computes only the kinds its own process has registered.
 */
export function registerStudyKind(handler: StudyHandler): void {
  const known = HANDLERS.get(handler.kind);
  if (known && known !== handler) throw new InputError(`a kind of study named '${handler.kind}' is already registered`);
  HANDLERS.set(handler.kind, handler);
}

export function studyKinds(): string[] {
  return [...HANDLERS.keys()];
}
