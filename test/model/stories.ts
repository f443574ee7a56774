import path from 'node:path';

export const STORIES = path.resolve('../shared/models/stories260k');
/** Greedy ids after BOS, computed independently by llama2.c's run.c (../shared/models/README.md). */
export const STORIES_IDS = [461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435, 299, 362, 409, 283, 264, 283, 452, 288, 13, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 293, 430, 417, 363, 416, 315, 342];
