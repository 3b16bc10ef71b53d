/**
 * The kinds of study a driver, a shard or a worker can compute, by name (the job name on the queue).
 * A new kind (in-situ training over chips, say) is one more entry: a StudyHandler (sweep/study.ts).
 */
import { InputError } from '../common/errors.js';
import { faultRateHandler } from './fault-rate.js';
import { paramHandler } from './param.js';
import type { StudyHandler } from './study.js';

const HANDLERS: ReadonlyMap<string, StudyHandler> = new Map<string, StudyHandler>([
  [faultRateHandler.kind, faultRateHandler],
  [paramHandler.kind, paramHandler],
]);

export function handlerFor(kind: string): StudyHandler {
  const h = HANDLERS.get(kind);
  if (!h) throw new InputError(`unknown kind of study '${kind}'; this dendra computes ${[...HANDLERS.keys()].join(', ')}`);
  return h;
}

export function studyKinds(): string[] {
  return [...HANDLERS.keys()];
}
