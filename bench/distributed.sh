#!/usr/bin/env bash
# The speed-up of a queued sweep (docs/distributed.md): one fault-rate sweep of the 784-500-10 MNIST network,
# run locally (one process, --threads WORKERS) and then on a local Redis by WORKERS workers (--threads 1 each),
# both timed from the shell; the two JSON reports are compared field for field (but `run` and `files`).
#   bash bench/distributed.sh [WORKERS]      (default 2; needs redis-server, `npm install` done)
#   TRIALS=N (default 2) chips per rate: the study has TRIALS × 5 points.
set -euo pipefail
cd "$(dirname "$0")/.."
workers=${1:-2}
out=$(mktemp -d)
M=test/fixtures/mnist
args=(sweep "$M/mnist-784x500x10.onnx" --device hfo2-1t1r --rates 0,0.05,0.1,0.2 --trials "${TRIALS:-2}"
      --input "$M/digits28-f32.npy" --labels "$M/labels.npy" --json)

port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$out" --daemonize yes --pidfile "$out/redis.pid" --logfile "$out/redis.log"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
url="redis://127.0.0.1:$port"

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
t0=$(date +%s%N)
node dist/cli/main.js "${args[@]}" --threads "$workers" > "$out/local.json"
t1=$(date +%s%N)
local_s=$(( (t1 - t0) / 1000000 ))

for i in $(seq "$workers"); do
  node dist/cli/main.js worker --queue "$url" --threads 1 --name "w$i" --quiet & pids+=($!)
done
sleep 1
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
t0=$(date +%s%N)
node dist/cli/main.js "${args[@]}" --queue "$url" > "$out/queue.json"
t1=$(date +%s%N)
queue_s=$(( (t1 - t0) / 1000000 ))

node -e '
const fs = require("fs");
const [a, b] = process.argv.slice(1, 3).map((f) => JSON.parse(fs.readFileSync(f, "utf8")));
const strip = ({ run, files, ...rest }) => JSON.stringify(rest);
console.log(`points: ${a.settings.trials * (1 + a.settings.rates.length)}, identical results: ${strip(a) === strip(b)}`);
console.log(`local run (--threads ${process.argv[3]}): ${(process.argv[4] / 1000).toFixed(1)} s wall (points ${a.run.seconds.toFixed(1)} s)`);
console.log(`queue, ${process.argv[3]} workers (--threads 1 each): ${(process.argv[5] / 1000).toFixed(1)} s wall (points ${b.run.seconds.toFixed(1)} s), jobs per worker ${JSON.stringify(b.run.workers)}`);
console.log(`speed-up (local wall ÷ queue wall): ${(process.argv[4] / process.argv[5]).toFixed(2)}x`);
' "$out/local.json" "$out/queue.json" "$workers" "$local_s" "$queue_s"
