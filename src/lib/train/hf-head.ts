/**
 * train-sft --action-head on a Hugging Face checkpoint (llama-style text models, idefics3/SmolVLM-style
 * vision-language models): the LoRA model of hf-model.ts as the backbone, fed by its processor; the head's features
 * are the text model's final hidden states at the prompt's last token and their mean over the prompt
 * (model/action-head-hf.ts). The head always trains; the LoRA adapters train too unless `freezeBackbone`. The run
 * directory holds the adapter files of a LoRA run (PEFT's, vlakit.json with the base model) plus action_head.json
 * and action_head.safetensors.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { ActionCodec } from '../actions/codecs.js';
import type { TrainingExample } from '../actions/examples.js';
import type { ActionHead } from '../model/action-head.js';
import { writeActionHead } from '../model/action-head.js';
import { hfHeadFeatures } from '../model/action-head-hf.js';
import type { ImageFeatures } from '../model/arch/ops.js';
import type { Batch, PixelLayout, Prepared } from './data.js';
import { type FeaturesOf, type HeadEvalResult, type HeadLossSettings, type HeadOptions, attachHeadTargets, evaluateHead, headLossWith } from './head.js';
import type { HfLoraModel } from './hf-model.js';
import { HfTrainee, type Trainee } from './hf-sft.js';
import type { LossParts } from './loss.js';
import type { AdamW } from './optim.js';

/** The images of a batch as the model takes them: pixel_values, or a frozen vision tower's cached features. */
function imageInput(model: HfLoraModel, batch: Batch, items: Prepared[]): tf.Tensor | ImageFeatures<tf.Tensor> | undefined {
  if (!batch.pixels) return undefined;
  if (!model.freezeVision) return batch.pixels;
  const parts = items.filter((x) => x.tiles).map((x) => model.features(x.pixels, x.tiles!));
  return { features: parts.length === 1 ? parts[0] : tf.concat(parts, 0) };
}

/** The head's features of a batch on a LoRA model (and its logits when asked), as headLossWith takes them. */
export function hfFeaturesOf(model: HfLoraModel, batch: Batch, items: Prepared[]): FeaturesOf {
  return (promptEnd, logits) => hfHeadFeatures(model, batch.ids, imageInput(model, batch, items), promptEnd, { logits });
}

export class HfHeadTrainee implements Trainee {
  readonly vars: tf.Variable[];
  readonly layout: PixelLayout;
  readonly parameters: number;
  private readonly text: HfTrainee;

  constructor(
    readonly model: HfLoraModel,
    text: HfTrainee,
    readonly head: ActionHead,
    readonly codec: ActionCodec,
    private readonly o: HeadOptions & { seed?: number },
  ) {
    this.text = text;
    this.vars = [...(o.freezeBackbone ? [] : model.trainable()), ...head.vars()];
    this.layout = text.layout;
    this.parameters = model.numParameters() + head.numParameters();
  }

  get lossSettings(): HeadLossSettings {
    return { seed: this.o.seed ?? 0, langWeight: this.o.langWeight ?? 1, freezeBackbone: this.o.freezeBackbone ?? false };
  }

  async prepare(examples: TrainingExample[]): Promise<Prepared[]> {
    const out = await this.text.prepare(examples);
    // the prompt is the rendered user turn with the assistant's opening, as generation renders it
    attachHeadTargets(out, examples, this.head.config, this.codec, (p) => p.promptLength! - 1);
    return out;
  }

  private featuresOf(batch: Batch, items: Prepared[]): FeaturesOf {
    return hfFeaturesOf(this.model, batch, items);
  }

  logits(batch: Batch, items: Prepared[]): tf.Tensor3D {
    return this.text.logits(batch, items);
  }

  loss(batch: Batch, items: Prepared[], lambdaR: number, key: number): LossParts {
    return headLossWith(this.featuresOf(batch, items), this.head, this.lossSettings, batch, items, lambdaR, key);
  }

  evaluateHead(items: Prepared[]): Promise<HeadEvalResult | undefined> {
    return evaluateHead(this.head, this.codec, items, this.layout, (b, its) => this.featuresOf(b, its));
  }

  decode(ids: number[]): string {
    return this.text.decode(ids);
  }

  resume(dir: string): void {
    this.text.resume(dir);
  }

  async save(dir: string, opt: AdamW | undefined, state: object, o: { codec?: ActionCodec; actionStats?: unknown }): Promise<void> {
    await this.text.save(dir, opt, state, o);
    await writeActionHead(dir, this.head);
  }

  dispose(): void {
    this.text.dispose();
    this.head.dispose();
  }
}
