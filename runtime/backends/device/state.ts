/**
 * Knowing that a board still holds what was put on it (docs/protocol.md, "Boards that restart"). Every
 * operation that builds state on a board over many requests (deploy; in-situ training) keeps a
 * StateWatch: it remembers the board's boot id and the link's reconnect count, and after each step
 * re-identifies the board when the link was re-established (or always, when asked): a changed boot id
 * throws StateLost, and the operation starts over or fails — it never marks a half-built state ready.
 */
import type { Board } from './board.js';
import { BoardRequestError } from './client.js';

/** The board's boot id changed: it restarted and lost what was programmed. */
export class StateLost extends Error {
  constructor(readonly before: string | undefined, readonly after: string | undefined) {
    super(`board restarted (boot ${before} -> ${after})`);
  }
}

export class StateWatch {
  /** Link re-establishments seen (the driver's reconnects plus new connections), each re-identified. */
  reconnects = 0;
  #seen: number;

  /** `board()` returns the current connection (a caller may replace it after a LinkError). */
  constructor(private readonly board: () => Board, public boot: string | undefined) {
    this.#seen = board().stats().reconnects;
  }

  /** A new connection replaced the old one: count it and re-identify. */
  async reconnected(): Promise<void> {
    this.reconnects++;
    this.#seen = this.board().stats().reconnects;
    await this.check(true);
  }

  /** Throws StateLost if the board restarted; looks only after a reconnect unless `always`. */
  async check(always: boolean): Promise<void> {
    for (;;) {
      const board = this.board();
      const r = board.stats().reconnects;
      if (!always && r === this.#seen) return;
      this.reconnects += r - this.#seen;
      this.#seen = r;
      const s = await board.status();
      if (board.stats().reconnects !== this.#seen) {
        always = true;
        continue; // the status itself went over a new link: count it and look again
      }
      if (s.boot !== this.boot) throw new StateLost(this.boot, s.boot);
      return;
    }
  }

  /** A board's 'state-lost' refusal (a Mark carrying an old boot id) as a StateLost; other errors as they are. */
  async translate(e: unknown): Promise<unknown> {
    if (e instanceof BoardRequestError && e.code === 'state-lost') return new StateLost(this.boot, (await this.board().status()).boot);
    return e;
  }
}
