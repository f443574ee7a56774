/** VQA evaluation: datasets, metrics, the scene-question generator, models, and the forgetting report. */
export { loadImage, readMmbenchTsv, readVqaDataset, readVqaJsonl, readVqav2, type ImageSource, type Metric, type VqaItem } from './datasets.js';
export { LETTERS, POSITION_TOLERANCE, anls, exactMatch, extractChoice, levenshtein, normalizeAnswer, positionError, processDigitArticle, processPunctuation, rotateChoices, vqaAccuracy } from './metrics.js';
export { DEFAULT_SCENE_QA_TYPES, SCENE_QA_TYPES, SIDE_MARGIN, generateSceneQa, sceneQaExample, sceneQuestions, type SceneFacts, type SceneQaItem, type SceneQaType } from './sceneqa.js';
export { EndpointModel, RunnerModel, endpointUrlFor, evaluateModel, forgettingReport, formatForgetting, scoreItem, summarize, vqaPrompt, type BenchmarkScore, type ForgettingReport, type Sample, type VqaModel } from './evaluate.js';
