/** Record I/O: TFRecord, tf.train.Example, RLDS datasets, JSON Lines, and the convert/inspect jobs over them. */
export { crc32cOf, maskCrc, maskedCrc32c } from './crc32c.js';
export { TfrecordDecoder, decodeTfrecord, encodeTfrecord, frameTfrecord, looksLikeTfrecord } from './tfrecord.js';
export type { TfRecord, TfrecordStats, TfrecordDecodeOptions } from './tfrecord.js';
export {
  decodeExample,
  encodeExample,
  decodeSequenceExample,
  encodeSequenceExample,
  sniffExampleKind,
} from './example.js';
export type { Example, SequenceExample, Feature, Features, Int64 } from './example.js';
export * from './json.js';
export { JsonlDecoder, decodeJsonl, encodeJsonl, stringifyRecord } from './jsonl.js';
export * from './records.js';
export { parseFeatures, featuresToJson, flattenFeatures } from './features.js';
export type { FeatureNode, Leaf, Dtype } from './features.js';
export { decodeEpisode, encodeEpisode, inferFeatures, inferFeaturesFromExample } from './episode.js';
export { openRlds, readRlds, writeRlds, overlayFeatures, groupEpisodes, loadFeatures, isRldsDir, splitShards, splitNames } from './rlds.js';
export type { RldsDataset, DatasetInfo } from './rlds.js';
export { readRecords, readKind, sniffFormat, newStats, rldsInputs } from './read.js';
export type { ReadOptions, ReadStats, SourceRecord, DecodeMode } from './read.js';
export { readValidated } from './validated.js';
export type { ValidatedRecord } from './validated.js';
export { readBytes, openBytes, expandInputs, gunzip, peek } from './sources.js';
export { AtomicFile, ShardedTfrecordWriter, writeFileAtomic, writeOutputFile, shardSuffix } from './writer.js';
export type { AtomicFileOptions, ShardedWriterOptions } from './writer.js';
export {
  claimOutput,
  checkDistinctOutputs,
  liveTemporaries,
  removeStaleTemporaries,
  removeTemporariesSync,
  tempNameFor,
  writeError,
  writeOutputDir,
} from './outputs.js';
export type { OutputClaim, OutputKind, OutputOptions } from './outputs.js';
export { imageInfo, sniffImageMime } from './images.js';
export { convert, outputFormatFor } from './convert.js';
export { isLeRobotDir, leRobotInfo } from './lerobot.js';
export type { ConvertOptions, ConvertSummary, OutputFormat } from './convert.js';
export { inspect, formatInspect } from './inspect.js';
export type { InspectSummary } from './inspect.js';
export { checkOutputFormat, extensionFormat, writeEpisodes, writeJsonl, writeStdout } from './output.js';
export type { WriteJsonlOptions, WriteEpisodesOptions } from './output.js';
export { readJsonFile, decodeUtf8Strict, zodProblem } from './json-file.js';
export type { ReadJsonFileOptions } from './json-file.js';
export { PRIMARY_CAMERAS, cameraNames, camerasOf, keepCameras, parseCameraList } from './cameras.js';
export { MAX_SHARDS, ShardJob, ShardManifestSchema, episodeIdOf, inShard, manifestPathFor, newTally, parseShard, readShardManifest, shardByEpisode, shardSize, shardText } from './shard.js';
export type { Shard, ShardManifest, ShardTally } from './shard.js';
export { checkManifests, mergeSampleShards, mergeShards, resolveParts, sampleUnitId } from './shard-merge.js';
export type { MergePart, MergeSummary } from './shard-merge.js';
