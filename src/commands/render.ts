import { Args, Flags } from '@oclif/core';
import path from 'node:path';
import { VlakitCommand, sharedFlags } from '../lib/cli/base.js';
import { int } from '../lib/cli/flags.js';
import { startProgress } from '../lib/cli/progress.js';
import { VlakitError } from '../lib/errors.js';
import { findFfmpeg, videoName, writeEpisodeVideo } from '../lib/diag/index.js';
import { StepRecordSchema, groupEpisodes, readValidated, writeOutputDir } from '../lib/io/index.js';

export default class Render extends VlakitCommand {
  static summary = 'One video per episode of recorded steps (a rollout\'s records): camera frames with the instruction, the model\'s text and the verifier\'s decisions.';
  static description =
    'Reads step records (JSON Lines, TFRecord or RLDS, as rollout writes them) and writes, per episode, an MP4 (H.264, when ffmpeg is found: VLAKIT_FFMPEG, the optional @ffmpeg-installer/linux-x64 package or the PATH) or an animated GIF into a directory. Each frame is the step\'s first camera image, scaled up, beside a panel: the instruction, the world\'s subtask (built-in world), the policy\'s subtasks, motion plan and action text, the verifier\'s decisions, the executed action, safety interventions and, on the last frame, how the episode ended. rollout --video writes the same videos while it runs, from larger renders of the built-in world.';
  static strict = false;
  static args = { input: Args.string({ description: 'step records (a rollout\'s output); "-" or nothing for stdin', required: false, ignoreStdin: true }) };
  static examples = [
    { description: 'Videos of an evaluation run', command: '<%= config.bin %> render eval_oracle_verifier.jsonl -o videos' },
    { description: 'The first 3 episodes as GIFs', command: '<%= config.bin %> render eval.jsonl --limit 3 --format gif -o videos' },
  ];
  static flags = {
    output: Flags.string({ char: 'o', description: 'directory for the videos', required: true, helpValue: 'DIR' }),
    overwrite: sharedFlags.overwrite,
    format: Flags.string({ description: 'mp4 (needs ffmpeg) or gif; auto: mp4 when ffmpeg is found', options: ['auto', 'mp4', 'gif'], default: 'auto' }),
    size: int({ description: 'side of the camera image in the video, px (even)', default: 384, min: 64, max: 1024 }),
    fps: int({ description: 'frames per second (the rollout\'s control rate plays in real time)', default: 5, min: 1, max: 100 }),
    limit: int({ description: 'at most N episodes', min: 1, max: 10_000_000 }),
    split: Flags.string({ description: 'RLDS split to read', default: 'train' }),
    quiet: sharedFlags.quiet,
  };

  async run(): Promise<void> {
    const { argv, flags } = await this.parse(Render);
    const inputs = argv.length ? (argv as string[]) : ['-'];
    if (flags.size % 2) throw new VlakitError('E_USAGE', `--size must be even (H.264 frames), got ${flags.size}`);
    const ffmpeg = flags.format === 'gif' ? undefined : findFfmpeg();
    if (flags.format === 'mp4' && !ffmpeg) throw new VlakitError('E_USAGE', '--format mp4 needs ffmpeg: install @ffmpeg-installer/linux-x64 (npm), put ffmpeg on the PATH or set VLAKIT_FFMPEG; or use --format gif');
    const format = ffmpeg ? 'mp4' : 'gif';
    const signal = this.abort.signal;
    const progress = await startProgress('render', !flags.quiet);
    let episodes = 0;
    let frames = 0;
    try {
      await writeOutputDir(flags.output, async (tmp) => {
        const records = (async function* () {
          for await (const r of readValidated(inputs, 'step', StepRecordSchema, 'render reads step records (a rollout\'s output)', { split: flags.split, signal })) yield { record: r.value, line: r.line, file: r.file };
        })();
        for await (const ep of groupEpisodes(records)) {
          if (flags.limit !== undefined && episodes >= flags.limit) break;
          const r = await writeEpisodeVideo(ep, path.join(tmp, videoName(ep, episodes, format)), { format, ffmpeg, fps: flags.fps, size: flags.size, signal });
          episodes++;
          frames += r.frames;
          progress.update({ records: episodes, unit: 'episodes', detail: `${frames} frames` });
        }
        if (!episodes) throw new VlakitError('E_USAGE', 'no episodes in the input');
      }, this.outputOptions(flags, inputs));
      progress.stop();
      this.note(`vlakit render: ${episodes} ${format} videos, ${frames} frames, in ${flags.output}`, flags.quiet);
    } finally {
      progress.stop();
    }
  }
}
