/**
 * The processor contract (what LeRobot calls a processor, transformers a Processor): everything between a
 * user's text + camera images and a model's inputs. One per architecture family, built from the checkpoint's own
 * files (tokenizer.json, tokenizer_config.json, special_tokens_map.json, chat_template(.json|.jinja),
 * preprocessor_config.json, processor_config.json). Training, generation, rollout, eval-vqa and attn-viz build
 * every model input through it; nothing else knows where image tokens go or which ids are special.
 */

/** An image as the processor takes it: encoded bytes (PNG/JPEG...) or raw RGB. */
export type ProcessorImage = Uint8Array | { width: number; height: number; rgb: Uint8Array };

/** One part of a chat message (transformers' chat-template content format). */
export type ChatPart = { type: 'text'; text: string } | { type: 'image' };
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ChatPart[];
}

/** The token ids the checkpoint's tokenizer files name (never fixed ids). */
export interface SpecialTokens {
  bos?: number;
  /** Ids that end a generation: the tokenizer's eos, the config's eos_token_id(s), the template's end of turn. */
  eos: number[];
  pad?: number;
  /** The image placeholder token of a vision-language model. */
  image?: number;
}

/** Model inputs of one prompt. */
export interface ProcessorInputs {
  /** Token ids with every image placeholder expanded (tile markers, one image token per image feature). */
  ids: number[];
  /** pixel_values [tiles, C, S, S] flattened, normalized; empty for a text prompt. */
  pixels: Float32Array;
  tiles: number;
  /** Per image: its tile grid (rows x cols of split tiles; 0 x 0 when not split) (a global tile follows splits). */
  grids: { rows: number; cols: number }[];
  /** Indices into `ids` of the image tokens, in order (tile t owns tokens [t*perTile, (t+1)*perTile)). */
  imagePositions: number[];
}

export interface Processor {
  readonly modelType: string;
  readonly special: SpecialTokens;
  /** Whether the checkpoint has a tokenizer.json (without one, text methods are usage errors: give token ids). */
  readonly hasTokenizer: boolean;
  /** Text -> ids, no special tokens added. */
  encodeText(text: string): number[];
  decode(ids: number[], o?: { skipSpecial?: boolean }): string;
  /**
   * The chat template rendered (with `add_generation_prompt`); a model without a template renders the messages'
   * text as it is.
   */
  renderChat(messages: ChatMessage[], o?: { addGenerationPrompt?: boolean }): string;
  /** What the template writes after an assistant answer (its end of turn), as ids: a trained answer ends with them. */
  readonly turnEnd: number[];
  /**
   * A rendered prompt whose image placeholders (one per image, in order) take the images: the ids (with the
   * special tokens the checkpoint's tokenizer adds) and the pixel values, exactly as transformers'
   * `processor(text=prompt, images=images)` gives them.
   */
  encode(prompt: string, images?: ProcessorImage[]): Promise<ProcessorInputs>;
}
