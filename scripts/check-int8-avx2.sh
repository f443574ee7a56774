#!/usr/bin/env bash
# Opt-in check (not part of `make test`): int8 exports on an x86-64 CPU without VNNI, emulated with qemu-user.
# QEMU's TCG emulates AVX2 but not AVX-512, so onnxruntime takes its AVX2 int8 kernel (uint8 x int8 products added
# in pairs in 16 bits, with saturation) whatever the host CPU is. Checks, on a tiny random checkpoint:
#   1. the saturation probe: full-range weights saturate there, 7-bit ones multiply exactly;
#   2. `vlakit export --quantize int8` (7-bit weights) passes its parity gate there (exit 0);
#   3. `--full-range` is refused there (exit 2);
#   4. a full-range export made on this machine (where it does not saturate) misses the tolerance there, and the
#      runner warns; the 7-bit export gives the same logits as here.
# Needs an x86-64 Linux host and qemu-x86_64 (`apt-get install qemu-user`; QEMU >= 7.2 for AVX2). Takes a few
# minutes (everything in the emulator runs 5-20x slower). QEMU_CPU picks the emulated CPU (default Haswell).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v qemu-x86_64 >/dev/null || { echo "qemu-x86_64 not found: apt-get install qemu-user" >&2; exit 2; }
[ "$(uname -m)" = x86_64 ] || { echo "this check emulates x86-64 on an x86-64 host" >&2; exit 2; }
[ -d dist ] || npm run build
NODE=$(command -v node)
CPU=${QEMU_CPU:-Haswell}
OUT=$(mktemp -d "${TMPDIR:-/tmp}/vlakit-int8-avx2.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
emu() { qemu-x86_64 -cpu "$CPU" "$NODE" "$@" 2> >(grep -v "TCG doesn't support" >&2); }
fail=0
check() { if [ "$1" = "$2" ]; then echo "  ok: $3"; else echo "  FAILED: $3 (got $1, expected $2)"; fail=1; fi; }

# a tiny random 2-camera model (as the quantize tests make it)
node --input-type=module -e '
const { VlaModel } = await import("./dist/lib/model/model.js");
const { preset } = await import("./dist/lib/model/config.js");
const { buildTokenizer } = await import("./dist/lib/model/tokenizer.js");
const { writeDirAtomic, writeModelFiles } = await import("./dist/lib/model/checkpoint.js");
const { selectBackend } = await import("./dist/lib/model/backend.js");
await selectBackend("wasm");
const tok = await buildTokenizer(["grasp the red block", "move the gripper left 0.012", "Subtask: pick up the carrot and put it on the plate"], 160);
const m = VlaModel.init({ ...preset("tiny", tok.vocabSize, 2), initializer_range: 0.05 }, 11);
await writeDirAtomic(process.argv[1], (d) => writeModelFiles(d, m, tok.json));
m.dispose();
' "$OUT/ck"

PROBE='
const { probeInt8, hostInt8 } = await import("./dist/lib/export/index.js");
const { loadOrt } = await import("./dist/lib/infer/index.js");
const ort = await loadOrt();
for (const w of [127, 63]) { const p = await probeInt8(ort, w); console.log(`  probe, |q| <= ${w}: ${p.exact ? "exact" : "WRONG"} (${p.got.toFixed(3)}, expected ${p.expected})`); }
console.log(`  this CPU: ${(await hostInt8(ort)).description}`);
'
PARITY='
const { checkParity, parityCases } = await import("./dist/lib/export/index.js");
const { openModel } = await import("./dist/lib/infer/index.js");
const [ck, ...exps] = process.argv.slice(1);
const ref = await openModel(ck, { backend: "wasm" });
const cases = parityCases(ref.config.vision_config.image_size, ref.config.num_cameras);
for (const e of exps) {
  const r = await openModel(e, { onWarning: (m) => console.log(`  warning: ${m}`) });
  const p = await checkParity(ref, r, cases);
  const pct = (100 * p.maxAbsDiff) / p.maxAbsLogit;
  console.log(`  ${e.split("/").pop()}: max |logit diff| ${p.maxAbsDiff.toExponential(2)} (${pct.toFixed(2)}% of the largest |logit| ${p.maxAbsLogit.toFixed(2)}; tolerance 5%): ${pct <= 5 ? "within" : "MISSES"}`);
  await r.dispose();
}
await ref.dispose();
'

echo "== this machine"
node --input-type=module -e "$PROBE"
node bin/run.js export "$OUT/ck" -o "$OUT/int8-7bit" --quantize int8 -q
if node bin/run.js export "$OUT/ck" -o "$OUT/int8-full" --quantize int8 --full-range -q 2>/dev/null; then full=yes; else full=no; echo "  (this machine saturates too: no full-range export to carry over)"; fi
node --input-type=module -e "$PARITY" "$OUT/ck" "$OUT/int8-7bit" $([ $full = yes ] && echo "$OUT/int8-full")

echo "== emulated $CPU (qemu-x86_64 $(qemu-x86_64 --version | head -n1 | sed 's/.*version \([0-9.]*\).*/\1/'))"
emu --input-type=module -e "$PROBE" | tee "$OUT/probe.txt"
check "$(grep -c 'probe, |q| <= 127: WRONG' "$OUT/probe.txt")" 1 "full-range weights saturate"
check "$(grep -c 'probe, |q| <= 63: exact' "$OUT/probe.txt")" 1 "7-bit weights multiply exactly"
set +e
emu bin/run.js export "$OUT/ck" -o "$OUT/emu-7bit" --quantize int8 2>&1 | grep -E 'int8|E_'
rc7=${PIPESTATUS[0]}
emu bin/run.js export "$OUT/ck" -o "$OUT/emu-full" --quantize int8 --full-range 2>&1 | grep -E 'E_'
rcf=${PIPESTATUS[0]}
set -e
check "$rc7" 0 "vlakit export --quantize int8 passes its parity gate"
check "$rcf" 2 "vlakit export --quantize int8 --full-range is refused"
emu --input-type=module -e "$PARITY" "$OUT/ck" "$OUT/int8-7bit" $([ $full = yes ] && echo "$OUT/int8-full") | tee "$OUT/parity.txt"
check "$(grep -c 'int8-7bit: .*within' "$OUT/parity.txt")" 1 "the 7-bit export made on this machine is within tolerance there"
if [ $full = yes ]; then
  check "$(grep -c 'int8-full: .*MISSES' "$OUT/parity.txt")" 1 "the full-range export made on this machine misses the tolerance there"
  check "$(grep -c 'warning: .*int8-full has full-range int8 weights' "$OUT/parity.txt")" 1 "the runner warns about it"
fi
[ $fail = 0 ] && echo "int8 on emulated $CPU: all checks passed" || { echo "int8 on emulated $CPU: some checks FAILED"; exit 1; }
