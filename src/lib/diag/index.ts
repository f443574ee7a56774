/** Diagnostics of a policy that fails: failure analysis of rollout episodes, episode videos, open-loop replay. */
export { episodeAnalysis, formatFailures, type EndKind, type EpisodeAnalysis } from './analysis.js';
export { findFfmpeg, videoName, videoSize, writeEpisodeVideo, type RgbFrame, type VideoFormat, type VideoOptions } from './video.js';
