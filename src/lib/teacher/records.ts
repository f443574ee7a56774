/**
 * The fields `annotate` adds to step records (docs/FORMATS.md, "Annotation fields"), and the steps it reads, as zod
 * schemas: annotate writes these types, and chunk validates them where it reads annotated steps.
 */
import { z } from 'zod';
import { expected, FiniteNumberSchema, StepRecordSchema } from '../io/records.js';

const step = z.number().int().nonnegative();

/** `reasoning` (ReFineVLA): the rationale for one step; the text fields are empty and `error` says why when the teacher failed. */
export const ReasoningAnnotationSchema = z.looseObject({
  observation: z.string(),
  situation_analysis: z.string(),
  spatial_reasoning: z.string(),
  task_planning: z.string(),
  logical_steps: z.array(z.string()),
  sub_action: z.string(),
  source_step: step.optional(),
  /** What the teacher could not determine (the kinematic teacher on data other than the built-in world's). */
  unknown: z.array(z.string()).optional(),
  teacher: z.string().optional(),
  prompt_version: z.string().optional(),
  error: z.string().optional(),
});
export type ReasoningAnnotation = z.infer<typeof ReasoningAnnotationSchema>;

/** `plan` (VLM2VLA): the subtask of the episode's plan that covers the step; index -1 and `error` when the teacher failed. */
export const PlanAnnotationSchema = z
  .looseObject({
    index: z.number().int().min(-1),
    description: z.string(),
    reasoning: z.string().optional(),
    main_movements: z.string().optional(),
    start: step,
    end: step,
    count: step.optional(),
    repairs: z.array(z.string()).optional(),
    unknown: z.array(z.string()).optional(),
    teacher: z.string().optional(),
    prompt_version: z.string().optional(),
    error: z.string().optional(),
  })
  .refine((p) => p.start <= p.end, { message: 'start must not be after end', path: ['end'] });
export type PlanAnnotation = z.infer<typeof PlanAnnotationSchema>;

/** [dx, dy, dz, gripper] or 7-D with rotations: at least 4 finite numbers. */
export const StepActionSchema = z.array(FiniteNumberSchema, { error: expected('a list of numbers') }).min(4, 'expected at least 4 numbers ([dx, dy, dz, gripper], or 7-D)');

/** A step that annotate and chunk can use: a step record whose action is 4 or more finite numbers. */
export const ActionStepSchema = StepRecordSchema.extend({ action: StepActionSchema });

/** A step as chunk reads it: with its action, and the annotations when present (null: a step without one, as RLDS stores it). */
export const AnnotatedStepSchema = ActionStepSchema.extend({
  plan: PlanAnnotationSchema.nullable().optional(),
  reasoning: ReasoningAnnotationSchema.nullable().optional(),
});
export type AnnotatedStep = z.infer<typeof AnnotatedStepSchema>;
