/**
 * The Hugging Face side of train-sft: a checkpoint from `--init DIR` (config.json + safetensors of an architecture
 * in the registry) trained with LoRA through its processor's inputs, and its checkpoints as PEFT adapters with the
 * base model's HF module names (adapter_config.json + adapter_model.safetensors) plus vlakit.json (what vlakit needs
 * to run it later: the base model, the action codec, LoRA settings), action_stats.json, optimizer and trainer state.
 */
import { promises as fsp } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { z } from 'zod';
import type { ActionCodec } from '../actions/codecs.js';
import { readPeftAdapter, writePeftAdapter } from '../model/arch/adapter.js';
import type { Processor } from '../model/processor/types.js';
import { writeSafetensors } from '../model/safetensors.js';
import type { AdamW } from './optim.js';
import { type Batch, type PixelLayout, type Prepared, prepareWithProcessor } from './data.js';
import type { TrainingExample } from '../actions/examples.js';
import { HfLoraModel } from './hf-model.js';
import type { VlaModel } from '../model/model.js';
import type { HeadEvalResult } from './head.js';
import type { GroundEvalResult } from './ground.js';
import type { LossParts } from './loss.js';
import { STATE_FILE } from './run-dir.js';

/** The file beside a PEFT adapter that says what vlakit needs to run it. */
export const VLAKIT_ADAPTER_FILE = 'vlakit.json';

export const VlakitAdapterSchema = z.object({
  format: z.literal('vlakit-adapter/1'),
  /** The --init checkpoint the adapter belongs to (as given). */
  base_model: z.string(),
  model_type: z.string(),
  /** relabel's action representation (decoding the model's actions), null when unknown. */
  action_codec: z.record(z.string(), z.unknown()).nullable(),
  lora: z.object({ r: z.number().int().positive(), alpha: z.number().positive(), modules: z.number().int().positive(), freeze_vision: z.boolean() }),
});
export type VlakitAdapter = z.infer<typeof VlakitAdapterSchema>;

/** What train-sft needs of a model, whichever kind it is. */
export interface Trainee {
  /** The model the trainable weights belong to (what a data-parallel replica rebuilds). */
  readonly model: VlaModel | HfLoraModel;
  readonly vars: tf.Variable[];
  readonly layout: PixelLayout;
  readonly parameters: number;
  prepare(examples: TrainingExample[]): Promise<Prepared[]>;
  /** The batch (made from `items`) -> logits [B, T, V]. */
  logits(batch: Batch, items: Prepared[]): tf.Tensor3D;
  /** The training loss when it is not the language loss of `logits` alone (an action head's); `key` seeds its noise. */
  loss?(batch: Batch, items: Prepared[], lambdaR: number, key: number): LossParts;
  /** An action head's held-out error (train/head.ts); undefined when no example has a chunk. */
  evaluateHead?(items: Prepared[]): Promise<HeadEvalResult | undefined>;
  /** The keypoints' held-out grounding error (train/ground.ts); undefined when no example has a grounding target. */
  evaluateGround?(items: Prepared[]): Promise<GroundEvalResult | undefined>;
  decode(ids: number[]): string;
  save(dir: string, opt: AdamW | undefined, state: object, o: { codec?: ActionCodec; actionStats?: unknown }): Promise<void>;
  dispose(): void;
}

/** A Hugging Face checkpoint with LoRA adapters, fed by its processor. */
/** The logits of a batch on a LoRA model [B, T, V] (a frozen vision tower: each image's cached features). */
export function hfLogits(model: HfLoraModel, batch: Batch, items: Prepared[], o: { adapter?: Map<string, tf.Tensor> } = {}): tf.Tensor3D {
  const f = { ...o, prefix: prefixesOf(model, items) };
  if (!batch.pixels) return model.forward(batch.ids, undefined, f);
  if (!model.freezeVision) return model.forward(batch.ids, batch.pixels, f);
  // a frozen vision tower: each image's features come from the run's cache; [sum tiles, L, D] in batch order
  const parts = items.filter((x) => x.tiles).map((x) => model.features(x.pixels, x.tiles!));
  return model.forward(batch.ids, { features: parts.length === 1 ? parts[0] : tf.concat(parts, 0) }, f);
}

/** A prefix-LM's prefix per row (each item's prompt length); undefined for the other architectures. */
export function prefixesOf(model: HfLoraModel, items: Prepared[]): number[] | undefined {
  if (!model.arch.prefixLm) return undefined;
  return items.map((x) => {
    if (x.promptLength === undefined) throw new Error(`example ${x.id}: no prompt length for ${model.arch.modelType}'s prefix`);
    return x.promptLength;
  });
}

export class HfTrainee implements Trainee {
  readonly vars: tf.Variable[];
  readonly layout: PixelLayout;
  readonly parameters: number;

  constructor(
    readonly model: HfLoraModel,
    readonly processor: Processor,
    /** The --init directory, as given (base_model_name_or_path). */
    readonly init: string,
  ) {
    this.vars = model.trainable();
    this.parameters = model.numParameters();
    const v = model.vision;
    this.layout = { tiles: v ? { channels: v.channels, size: v.imageSize } : null, pad: processor.special.pad ?? processor.special.eos[0] ?? 0 };
  }

  prepare(examples: TrainingExample[]): Promise<Prepared[]> {
    return prepareWithProcessor(examples, this.processor, { maxTokens: this.model.arch.maxPositions(this.model.config) });
  }

  /** `o.adapter`: other LoRA matrices in place of the trained ones (train-rl's frozen reference). */
  logits(batch: Batch, items: Prepared[], o: { adapter?: Map<string, tf.Tensor> } = {}): tf.Tensor3D {
    return hfLogits(this.model, batch, items, o);
  }

  decode(ids: number[]): string {
    return this.processor.decode(ids, { skipSpecial: true });
  }

  /** Continues from a checkpoint's adapter. */
  resume(dir: string): void {
    this.model.loadAdapter(readPeftAdapter(dir).tensors, path.join(dir, 'adapter_model.safetensors'));
  }

  async save(dir: string, opt: AdamW | undefined, state: object, o: { codec?: ActionCodec; actionStats?: unknown }): Promise<void> {
    await writePeftAdapter(dir, await this.model.adapter(this.init));
    const meta: VlakitAdapter = {
      format: 'vlakit-adapter/1',
      base_model: this.init,
      model_type: this.model.arch.modelType,
      action_codec: o.codec?.describe() ?? null,
      lora: { r: this.model.lora.r, alpha: this.model.lora.alpha, modules: this.model.modules.length, freeze_vision: this.model.freezeVision },
    };
    await fsp.writeFile(path.join(dir, VLAKIT_ADAPTER_FILE), `${JSON.stringify(meta, null, 2)}\n`);
    if (o.actionStats !== undefined) await fsp.writeFile(path.join(dir, 'action_stats.json'), `${JSON.stringify(o.actionStats, null, 2)}\n`);
    if (opt) await writeSafetensors(path.join(dir, 'optimizer.safetensors'), await opt.state());
    await fsp.writeFile(path.join(dir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
  }

  dispose(): void {
    this.model.dispose();
  }
}
