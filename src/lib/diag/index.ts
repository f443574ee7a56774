/** Diagnostics of a policy that fails: failure analysis of rollout episodes, episode videos, open-loop replay. */
export { episodeAnalysis, formatFailures, type EndKind, type EpisodeAnalysis } from './analysis.js';
export { findFfmpeg, videoName, videoSize, writeEpisodeVideo, type RgbFrame, type VideoFormat, type VideoOptions } from './video.js';
export { actionText, expertPredictor, formatReplay, hasActions, modelPredictor, promptOf, replay, type Predictor, type ReplayOptions, type ReplayReport, type SplitReport } from './replay.js';
