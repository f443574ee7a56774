/** The embedded tabletop world, the env protocol and its transports, the safety filter and rollouts. */
export { CATALOG, ITEMS, RECEPTACLES, objectSpec } from './catalog.js';
export type { ObjectSpec } from './catalog.js';
export { WORKSPACE, TABLE_REGION, MAX_OPENING, sampleLayout, sceneXml } from './scene.js';
export type { Layout, Vec3 } from './scene.js';
export { World, loadMujoco, TIMESTEP } from './physics.js';
export { Renderer } from './render.js';
export type { Camera, Frame } from './render.js';
export { FAMILIES, parseFamilies, sampleTask, subtaskDone, taskSuccess, relations } from './tasks.js';
export type { Family, Task, Subtask } from './tasks.js';
export { ScriptedExpert } from './expert.js';
export { TabletopEnv, mainCamera, wristCamera, MAX_STEPS, decodeMask, type ObjectMasks } from './tabletop.js';
export type { TabletopOptions } from './tabletop.js';
export type { Env, Observation, StepResult, TaskRequest } from './protocol.js';
export { SafetyFilter, filterAction } from './safety.js';
export type { SafetyOptions } from './safety.js';
export { ExecEnv, WsEnv, openEnv, serveLines, serveWebsocket, handleMessage } from './transports.js';
export { runEpisodes, ScriptedPolicy, DartPolicy, DaggerPolicy, wilson, report, formatReport, builtinOf } from './rollout.js';
export type { Policy, EpisodeResult, FamilyReport, EpisodeOutcome } from './rollout.js';
