# Shared by the benchmarks: the loopback S3 server, side-by-side timing and peak RSS.
# Source it after `cd` to the repository; it defines functions and sets nothing else.

# Prints a TCP port of 127.0.0.1 that is free now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits (up to 10 s) until something accepts connections on 127.0.0.1:PORT.
wait_for_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# Starts s3s-fs on a free port over DIR (buckets are its subdirectories) with the given
# credentials, waits until it accepts connections and exports the AWS_* variables every client
# here reads. Sets s3_pid and s3_endpoint. Arguments: DIR LOG.
start_s3() {
  local dir=$1 log=$2 port
  export PATH="$HOME/.cargo/bin:$PATH"
  command -v s3s-fs >/dev/null || cargo install s3s-fs@0.14.1 --features binary --locked --quiet
  port=$(free_port)
  mkdir -p "$dir"
  s3s-fs --host 127.0.0.1 --port "$port" --access-key benchkey --secret-key benchsecret \
    "$dir" >"$log" 2>&1 &
  s3_pid=$!
  wait_for_port "$port"
  s3_endpoint=http://127.0.0.1:$port
  export AWS_ENDPOINT_URL=$s3_endpoint AWS_ACCESS_KEY_ID=benchkey \
    AWS_SECRET_ACCESS_KEY=benchsecret AWS_REGION=us-east-1
}

# Runs a command under /usr/bin/time -v while polling the command's own VmHWM (time's figure is
# the largest of the process and the children it waited for, e.g. pg_dump), and the whole
# machine's busy CPU time meanwhile (PostgreSQL's backends and the S3 server included). Prints
# "<time maxrss KiB> <own VmHWM KiB> <exit> <wall s> <user s> <sys s> <machine busy s>".
rss() {
  local log=$1
  shift
  python3 - "$log" "$@" <<'PY'
import os, re, subprocess, sys, time
log, cmd = sys.argv[1], sys.argv[2:]
def busy():
    ticks = list(map(int, open("/proc/stat").readline().split()[1:]))
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
before = busy()
with open(log, "w") as err:
    proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=subprocess.DEVNULL, stderr=err)
    child, hwm = None, 0
    while proc.poll() is None:
        try:
            if child is None:
                kids = open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()
                child = int(kids[0]) if kids else None
            if child is not None:
                for line in open(f"/proc/{child}/status"):
                    if line.startswith("VmHWM:"):
                        hwm = max(hwm, int(line.split()[1]))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass
        time.sleep(0.01)
machine = busy() - before
text = open(log).read()
def field(name):
    m = re.search(re.escape(name) + r":\s*(\S+)", text)
    return m.group(1) if m else "?"
wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss)")
parts = [float(p) for p in wall.split(":")] if wall != "?" else [0]
seconds = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
print(field("Maximum resident set size (kbytes)"), hwm, field("Exit status"), f"{seconds:.2f}",
      field("User time (seconds)"), field("System time (seconds)"), f"{machine:.2f}")
PY
}

# Times commands side by side with hyperfine, in rounds whose order alternates (A B C, C B A,
# ...) so a slow spell of the shared machine does not land on one command only; merges the
# rounds' times into one hyperfine-style JSON. Arguments: OUT.json, then NAME PREPARE COMMAND
# triples.
compare() {
  local json=$1
  shift
  local -a names=() preps=() cmds=()
  while [ $# -gt 0 ]; do names+=("$1"); preps+=("$2"); cmds+=("$3"); shift 3; done
  local runs=${runs:-10}
  local rounds=$(( runs < 2 ? 1 : (runs + 1) / 2 )) round i
  for ((round = 0; round < rounds; round++)); do
    local -a args=()
    for ((k = 0; k < ${#names[@]}; k++)); do
      i=$(( round % 2 == 0 ? k : ${#names[@]} - 1 - k ))
      args+=(--prepare "${preps[$i]}")
    done
    for ((k = 0; k < ${#names[@]}; k++)); do
      i=$(( round % 2 == 0 ? k : ${#names[@]} - 1 - k ))
      args+=(-n "${names[$i]}" "${cmds[$i]}")
    done
    local per=$(( runs - 2 * round < 2 ? runs - 2 * round : 2 ))
    [ "$runs" -lt 2 ] && per=$runs
    hyperfine --warmup $(( round == 0 ? 1 : 0 )) --runs "$per" --style basic \
      --export-json "$json.$round" "${args[@]}" >"$json.$round.log" 2>&1 \
      || { echo "FAIL: hyperfine (see below)"; tail -20 "$json.$round.log"; exit 1; }
  done
  python3 - "$json" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
merged = {}
for r in range(rounds):
    for res in json.load(open(f"{out}.{r}"))["results"]:
        m = merged.setdefault(res["command"], {"command": res["command"], "times": [], "user": [], "system": []})
        m["times"] += res["times"]
        m["user"] += [res["user"]] * len(res["times"])
        m["system"] += [res["system"]] * len(res["times"])
results = []
for m in merged.values():
    t = m["times"]
    results.append({"command": m["command"], "times": t, "median": statistics.median(t), "min": min(t),
                    "max": max(t), "mean": statistics.mean(t), "stddev": statistics.stdev(t) if len(t) > 1 else 0,
                    "user": statistics.mean(m["user"]), "system": statistics.mean(m["system"])})
    print(f"  {m['command']:<34} median {results[-1]['median']:.3f} s over {len(t)} runs")
json.dump({"results": results}, open(out, "w"), indent=1)
PY
}

