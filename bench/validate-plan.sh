#!/usr/bin/env bash
# Times `drillbook validate` and `drillbook plan` on a generated 1,000-step playbook, as whole
# processes (start-up included), and the refusal of malformed inputs. Goal (issue 2): validate
# + plan under 50 ms; every malformed input refused with exit 2 in under a second.
#
#   bash bench/validate-plan.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-1000}
command -v hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine; }
cargo build --release --quiet
bin=$PWD/target/release/drillbook
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

bench/gen-playbook.sh "$steps" > "$work/generated.yaml"
echo "playbook: $steps steps, $(wc -c < "$work/generated.yaml") bytes"
hyperfine --warmup 3 --runs 30 --style basic --export-json "$work/validate.json" \
  -n validate "$bin validate $work/generated.yaml" \
  -n plan "$bin plan $work/generated.yaml" \
  -n plan-json "$bin plan --format json $work/generated.yaml" \
  -n "validate+plan (one shell)" "$bin validate $work/generated.yaml && $bin plan $work/generated.yaml"

# Malformed inputs: each must end in exit 2, fast.
python3 - "$work" <<'PY'
import os, random, sys
d = sys.argv[1]
random.seed(7)
t = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
p = 'a'
for n in 'bcdefghij':
    t += n + ': &' + n + ' [' + ','.join(['*' + p] * 9) + ']\n'; p = n
t += 'version: 1\nname: bomb\nsteps: *j\n'
files = {
    'empty.yaml': b'',
    'not-yaml.yaml': b'steps: [unclosed\n  - x: {\n',
    'garbage.bin': bytes(random.getrandbits(8) for _ in range(65536)),
    'alias-bomb.yaml': t.encode(),
    'ten-mb.yaml': (b'# padding padding padding padding padding padding padding\n' * 180000),
    'nesting-flow.yaml': b'steps: ' + b'[' * 10000 + b']' * 10000 + b'\n',
    'nesting-block.yaml': b'steps:\n' + b'- ' * 10000 + b'x\n',
    'latin1.yaml': b'version: 1\nname: caf\xe9\n',
}
for name, data in files.items():
    open(os.path.join(d, name), 'wb').write(data)
os.mkdir(os.path.join(d, 'a-directory'))
PY
printf '\n%-20s %6s %10s\n' input exit "ms"
for f in empty.yaml not-yaml.yaml garbage.bin alias-bomb.yaml ten-mb.yaml nesting-flow.yaml nesting-block.yaml latin1.yaml a-directory; do
  start=$(date +%s%N)
  set +e; "$bin" validate "$work/$f" >/dev/null 2>&1; code=$?; set -e
  end=$(date +%s%N)
  printf '%-20s %6d %10.1f\n' "$f" "$code" "$(( (end - start) / 1000 ))e-3"
  [ "$code" -eq 2 ] || { echo "FAIL: $f exited $code"; exit 1; }
done
