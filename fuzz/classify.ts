/** Outcome classes of one fuzz input. */
import { DendraError } from '../common/errors.js';

export type Outcome = 'accepted' | 'typed' | 'untyped' | 'crash' | 'hang';
/** Outcomes that fail a fuzz run (and are saved as regression cases). */
export const BAD: readonly Outcome[] = ['untyped', 'crash', 'hang'];

/** accepted (returned), typed (a DendraError: one clear line for the user) or untyped (anything else). */
export async function classify(run: () => Promise<void>): Promise<{ outcome: Outcome; detail: string }> {
  try {
    await run();
    return { outcome: 'accepted', detail: '' };
  } catch (e) {
    if (e instanceof DendraError) {
      // A typed error is one line: a multi-line message would print a wall of text at the user.
      if (e.message.includes('\n')) return { outcome: 'untyped', detail: `${e.name} with a multi-line message: ${e.message.split('\n')[0]}` };
      return { outcome: 'typed', detail: `${e.name}: ${e.message}` };
    }
    const err = e as Error;
    return { outcome: 'untyped', detail: `${err?.name ?? typeof e}: ${String(err?.message ?? e).split('\n')[0]}\n${String(err?.stack ?? '').split('\n').slice(1, 6).join('\n')}` };
  }
}
