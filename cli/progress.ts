/** A progress bar on stderr (cli-progress); silent when stderr is not a terminal. */
import cliProgress from 'cli-progress';

export function progressBar(label: string, total: number, unit: string): { update(done: number): void; stop(): void } {
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {value}/{total} ${unit} | {duration_formatted}`, stream: process.stderr, hideCursor: true, clearOnComplete: true },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total, 0);
  return { update: (done) => bar.update(done), stop: () => bar.stop() };
}
