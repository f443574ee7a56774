/** The config.json of an ONNX export: the model config and vlakit's block describing the export. */
import { z } from 'zod';
import { VlaConfigObject, withConfigChecks } from '../model/config.js';
import type { ExportMeta } from './ort.js';

const ExportMetaSchema = z.looseObject({
  format: z.literal('onnx'),
  graphs: z.looseObject({ prefill: z.string().min(1), decode: z.string().min(1), prefill_attentions: z.string().optional(), decode_attentions: z.string().optional() }),
  attentions: z.boolean(),
  num_image_tokens: z.number().int().nonnegative(),
});

// the schema checks the fields of ExportMeta: this fails to compile when they drift apart
const _sameType: z.ZodType<ExportMeta> = ExportMetaSchema;
void _sameType;

export const ExportConfigSchema = withConfigChecks(
  VlaConfigObject.extend({
    vlakit: z.looseObject({ export: ExportMetaSchema.optional(), action_codec: z.record(z.string(), z.unknown()).nullable().optional() }).optional(),
  }),
);
