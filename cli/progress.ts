/** A progress bar on stderr (cli-progress); silent when stderr is not a terminal. */
import cliProgress from 'cli-progress';

export interface ProgressBar {
  update(done: number): void;
  /** One more done. */
  increment(): void;
  /** Shows what is being done now (bars made with `withStage`). */
  stage(text: string): void;
  stop(): void;
}

/** `withStage`: the bar ends with a stage text (what is being done now) instead of the elapsed time. */
export function progressBar(label: string, total: number, unit: string, withStage = false): ProgressBar {
  const bar = new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {value}/{total} ${unit} | ${withStage ? '{stage}' : '{duration_formatted}'}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0, { stage: '' });
  return {
    update: (done) => bar.update(done),
    increment: () => bar.increment(),
    stage: (text) => bar.update({ stage: text }),
    stop: () => bar.stop(),
  };
}
