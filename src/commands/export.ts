import { Args, Flags } from '@oclif/core';
import { VlakitCommand, sharedFlags } from '../lib/cli/base.js';
import { logEveryFlag, startProgress } from '../lib/cli/progress.js';
import { stageProgress } from '../lib/cli/progress-jobs.js';
import { VlakitError } from '../lib/errors.js';
import type { ParityResult } from '../lib/export/index.js';

export default class Export extends VlakitCommand {
  static summary = 'Export a checkpoint to ONNX (prefill + decode graphs with a KV cache) for onnxruntime.';
  static description =
    'Merges the LoRA adapters into the weights and writes prefill.onnx (images + prompt ids -> logits and the KV cache) and decode.onnx (new ids + past_key_values.* -> logits and present.*), opset 17 (with onnxruntime\'s fused attention and norms unless --ops standard; int8 weights with --quantize int8: 7-bit unless --full-range), over one external weights file, with config.json, tokenizer.json and action_stats.json beside them: the directory alone runs the policy (every command takes it as --model). Each graph passes a structural check; then the export is compared with the checkpoint (logits and greedy tokens) unless --no-parity.';
  static args = { checkpoint: Args.string({ description: 'a checkpoint directory of train-sft or train-rl', required: true }) };
  static examples = [
    { description: 'Export the SFT policy', command: '<%= config.bin %> export runs/sft -o runs/sft-onnx' },
    { description: 'With attention outputs for attn-viz', command: '<%= config.bin %> export runs/sft -o runs/sft-onnx --attentions' },
    { description: 'int8 weights (a quarter of the size, faster on the CPU; parity within 5% of the logit scale)', command: '<%= config.bin %> export runs/sft -o runs/sft-int8 --quantize int8' },
    { description: 'Full-range int8 weights, for CPUs with VNNI, AMX or arm64 only (refused elsewhere)', command: '<%= config.bin %> export runs/sft -o runs/sft-int8 --quantize int8 --full-range' },
  ];
  static flags = {
    output: Flags.string({ char: 'o', description: 'the export directory (an existing one only with --overwrite, replaced whole once the export is checked)', required: true, helpValue: 'DIR' }),
    overwrite: sharedFlags.overwrite,
    attentions: Flags.boolean({ description: 'add attentions.{i} outputs (for attn-viz); with --ops onnxruntime, as a second pair of graphs' }),
    ops: Flags.string({ description: 'onnxruntime: its fused operators (GroupQueryAttention, SimplifiedLayerNormalization) where the model allows them, fastest; standard: the default ONNX domain only, for any runtime', options: ['onnxruntime', 'standard'], default: 'onnxruntime' }),
    quantize: Flags.string({ description: 'int8: matmul weights as int8 with a scale per output column, activations quantized at run time (onnxruntime dynamic quantization); none: float32', options: ['none', 'int8'], default: 'none' }),
    'full-range': Flags.boolean({ description: 'with --quantize int8: full-range weights (-127..127) instead of 7-bit ones (-63..63): half the weight rounding error, but only for CPUs that add int8 products in 32 bits (x86-64 with AVX-512 VNNI, AVX-VNNI or AMX; arm64): refused on others, and runners warn on them' }),
    'reduce-range': Flags.boolean({ description: 'with --quantize int8: 7-bit weights, the default now', hidden: true }),
    adapter: Flags.string({ description: 'a Hugging Face checkpoint only: a PEFT LoRA adapter directory folded into the weights before the export (a train-sft --action-head run: its head graphs too)', helpValue: 'DIR' }),
    parity: Flags.boolean({ description: 'compare the export with the checkpoint on a few images and prompts', default: true, allowNo: true }),
    tolerance: Flags.string({ description: 'largest allowed |logit difference| in the parity check: a number, or a percentage of the largest |logit| of the checkpoint (default: 1e-4; 5% with --quantize int8)', helpValue: 'X|P%' }),
    device: Flags.string({ description: 'onnxruntime execution provider for the parity check', options: ['cpu', 'cuda'], default: 'cpu' }),
    backend: Flags.string({ description: 'tfjs backend for the parity check', options: ['tensorflow-gpu', 'tensorflow', 'wasm', 'cpu'] }),
    quiet: Flags.boolean({ char: 'q', description: 'no progress and summary on stderr' }),
    json: Flags.boolean({ description: 'print the summary as JSON on stderr' }),
    'log-every': logEveryFlag,
  };

  async run(): Promise<void> {
    const { args, flags } = await this.parse(Export);
    const { isHfCheckpoint } = await import('../lib/model/arch/hf.js');
    if (isHfCheckpoint(args.checkpoint)) return this.exportHf(args.checkpoint, flags);
    if (flags.adapter) throw new VlakitError('E_USAGE', '--adapter is for Hugging Face checkpoints; a vlakit checkpoint carries its own adapters (merged by export)');
    const quantize = flags.quantize === 'int8' ? ('int8' as const) : undefined;
    for (const f of ['full-range', 'reduce-range'] as const) if (flags[f] && !quantize) throw new VlakitError('E_USAGE', `--${f} goes with --quantize int8`);
    if (flags['full-range'] && flags['reduce-range']) throw new VlakitError('E_USAGE', '--full-range and --reduce-range (7-bit weights) contradict each other');
    const weightRange = flags['full-range'] ? ('full' as const) : ('7-bit' as const);
    const tolText = flags.tolerance ?? (quantize ? '5%' : '1e-4');
    const relative = tolText.endsWith('%');
    const tolValue = Number(relative ? tolText.slice(0, -1) : tolText);
    if (!/\d/.test(tolText) || !Number.isFinite(tolValue) || tolValue < 0) throw new VlakitError('E_USAGE', `--tolerance must be a number >= 0 or a percentage such as 5%, got "${tolText}"`);
    const { exportModel, checkParity, parityCases, hostInt8, EXPORT_STAGES } = await import('../lib/export/index.js');
    const { openBuiltinModel, loadOrt } = await import('../lib/infer/index.js');
    const t0 = performance.now();
    let parity: (ParityResult & { tfjs: string; onnxruntime: string }) | undefined;
    const progress = await startProgress('export', !flags.quiet && !flags.json, { logEvery: flags['log-every'] });
    const onStage = stageProgress(progress, [...EXPORT_STAGES, ...(flags.parity ? ['checking parity'] : [])]);
    const verify = async (dir: string) => {
      onStage('checking parity');
      const reference = await openBuiltinModel(args.checkpoint, { backend: flags.backend });
      let candidate: Awaited<ReturnType<typeof openBuiltinModel>> | undefined;
      try {
        candidate = await openBuiltinModel(dir, { device: flags.device as 'cpu' });
        const cfg = reference.config;
        parity = { ...(await checkParity(reference, candidate, parityCases(cfg.vision_config.image_size, cfg.num_cameras))), tfjs: reference.info.device, onnxruntime: candidate.info.device };
      } finally {
        await reference.dispose();
        await candidate?.dispose();
      }
      const tolerance = relative ? (tolValue / 100) * parity.maxAbsLogit : tolValue;
      // float32 must also give the same greedy ids; int8 changes the logits a little, so its ids are counted only
      if (parity.maxAbsDiff > tolerance || (!quantize && !parity.greedyMatch)) {
        const m = parity.mismatches[0];
        const cpu = await hostInt8(await loadOrt());
        const int8 = quantize && flags.device === 'cpu' ? `; int8 with ${weightRange} weights on this CPU: ${cpu.description}${weightRange === '7-bit' && cpu.saturates === false ? '; --full-range halves the weight rounding error, but the export then runs correctly only on CPUs like this one' : ''}` : '';
        throw new VlakitError('E_ONNX', `the export does not match its checkpoint, so it was not written: max |logit diff| ${parity.maxAbsDiff.toExponential(2)} (tolerance ${relative ? `${tolerance.toExponential(2)}: ${tolText} of the largest |logit| ${parity.maxAbsLogit.toFixed(2)}` : tolText})${m && !quantize ? `; greedy ids for "${m.prompt}": checkpoint ${m.reference.join(',')}, export ${m.cached.join(',')} (with the KV cache), ${m.uncached.join(',')} (without)` : ''}${int8}`, { file: flags.output });
      }
    };
    const res = await exportModel(args.checkpoint, flags.output, { attentions: flags.attentions, ops: flags.ops as 'onnxruntime', quantize, weightRange, backend: flags.backend, verify: flags.parity ? verify : undefined, output: this.outputOptions(flags, [args.checkpoint]), onStage }).finally(() => progress.stop());
    const seconds = (performance.now() - t0) / 1000;
    const bytes = res.files.reduce((a, f) => a + f.bytes, 0);
    if (flags.json) process.stderr.write(`${JSON.stringify({ ...res, seconds, parity })}\n`);
    else {
      if (res.ops !== flags.ops) this.note(`vlakit export: the head size is not a multiple of 8, which onnxruntime's fused attention needs: standard operators instead`, flags.quiet);
      this.note(`vlakit export: ${(res.parameters / 1e6).toFixed(2)}M parameters${res.loraMerged ? ' (LoRA merged)' : ''}, ${res.ops} operators${quantize ? `, int8 weights (${weightRange === 'full' ? 'full range, -127..127: for CPUs with VNNI, AMX or arm64 only' : '7-bit, -63..63: correct on every CPU'})` : ''} -> ${flags.output} (${res.files.map((f) => f.name).join(', ')}; ${(bytes / 1e6).toFixed(1)} MB) in ${seconds.toFixed(1)} s`, flags.quiet);
      for (const c of res.checks) this.note(`vlakit export: ${c.graph}: opset ${c.opset}, ${c.nodes} nodes, ${c.initializers} initializers; structural check passed (${c.outputsChecked} output shapes checked)`, flags.quiet);
      if (parity && !quantize) this.note(`vlakit export: parity with the checkpoint (${parity.tfjs} vs onnxruntime ${parity.onnxruntime}, ${parity.cases} cases): max |logit diff| ${parity.maxAbsDiff.toExponential(2)}, greedy tokens ${parity.greedyMatch ? 'identical' : 'DIFFER'} with and without the KV cache`, flags.quiet);
      if (parity && quantize) this.note(`vlakit export: int8 parity with the checkpoint (${parity.tfjs} vs onnxruntime ${parity.onnxruntime}, ${parity.cases} cases): max |logit diff| ${parity.maxAbsDiff.toExponential(2)} (${((100 * parity.maxAbsDiff) / Math.max(parity.maxAbsLogit, 1e-12)).toFixed(2)}% of the largest |logit|), greedy tokens with the cache identical in ${parity.greedyAgree} of ${parity.cases} cases`, flags.quiet);
    }
  }

  /**
   * A Hugging Face checkpoint: its architecture's prefill and decode graphs (onnxruntime's fused operators where the
   * architecture allows them, int8 with 7-bit weights, attention outputs with standard operators).
   */
  private async exportHf(dir: string, flags: { output: string; overwrite?: boolean; adapter?: string; parity: boolean; tolerance?: string; device: string; backend?: string; ops: string; quantize: string; 'full-range': boolean; attentions: boolean; quiet: boolean; json: boolean }): Promise<void> {
    if (flags['full-range']) throw new VlakitError('E_USAGE', '--full-range is for vlakit\'s own model; a Hugging Face export takes 7-bit int8 weights (correct on every CPU)');
    const quantize = flags.quantize === 'int8' ? ('int8' as const) : undefined;
    const tolerance = flags.tolerance === undefined ? undefined : Number(flags.tolerance);
    if (tolerance !== undefined && !(tolerance >= 0)) throw new VlakitError('E_USAGE', `--tolerance must be a number >= 0 for a Hugging Face checkpoint, got "${flags.tolerance}"`);
    const { exportHfChecked } = await import('../lib/export/hf.js');
    const t0 = performance.now();
    const res = await exportHfChecked(dir, flags.output, { parity: flags.parity, tolerance, device: flags.device as 'cpu', backend: flags.backend, output: this.outputOptions(flags, [dir]), adapter: flags.adapter, attentions: flags.attentions, ops: flags.ops as 'onnxruntime', quantize });
    const seconds = (performance.now() - t0) / 1000;
    if (flags.json) return void process.stderr.write(`${JSON.stringify({ ...res, seconds })}\n`);
    this.note(`vlakit export: ${(res.parameters / 1e6).toFixed(2)}M parameters, ${res.ops} operators${quantize ? ', int8 weights (7-bit)' : ''} -> ${flags.output} (${res.files.map((f) => f.name).join(', ')}) in ${seconds.toFixed(1)} s`, flags.quiet);
    for (const c of res.checks) this.note(`vlakit export: ${c.graph}: opset ${c.opset}, ${c.nodes} nodes, ${c.initializers} initializers; structural check passed (${c.outputsChecked} output shapes checked)`, flags.quiet);
    if (res.parity) this.note(`vlakit export: parity with the checkpoint (${res.parity.cases} cases): max |logit diff| ${res.parity.maxAbsDiff.toExponential(2)}, greedy tokens ${res.parity.greedyMatch ? 'identical' : 'differ (int8)'}`, flags.quiet);
  }
}
