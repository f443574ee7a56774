import { Flags } from '@oclif/core';
import { VlakitCommand } from '../../lib/cli/base.js';
import { policyFlags, policyOptions } from '../../lib/cli/policy-flags.js';

export default class RolloutServe extends VlakitCommand {
  static summary = 'Serve a policy over a websocket (msgpack) for an external simulator or robot loop.';
  static description =
    'Loads a checkpoint or an export once and answers, per connection: metadata on connect; {type: "reset", instruction, seed}; {type: "infer", observation: {camera: PNG/JPEG bytes or {mime, b64}, state}, instruction, info?} -> {type: "actions", actions, done, info, timing: {model_ms, server_ms}}. Each connection is one episode at a time with its own policy state (direct or the VLM2VLA hierarchy). `vlakit rollout --policy ws://host:port` is a client; so is PolicyClient in the library.';
  static examples = [
    { description: 'Serve the exported policy on port 8765', command: '<%= config.bin %> rollout serve --policy runs/sft-onnx --port 8765' },
    { description: 'Direct mode, listening on every interface', command: '<%= config.bin %> rollout serve --policy runs/refinevla --mode direct --host 0.0.0.0 --port 8765' },
  ];
  static flags = {
    policy: Flags.string({ description: 'a checkpoint or export directory', required: true, helpValue: 'DIR' }),
    port: Flags.integer({ description: 'port (0: any free port, printed on stderr)', default: 8765, min: 0, max: 65535 }),
    host: Flags.string({ description: 'interface to listen on', default: '127.0.0.1' }),
    ...policyFlags,
    quiet: Flags.boolean({ char: 'q', description: 'no log of requests on stderr' }),
  };

  protected readonly signalIsStop = true; // SIGTERM/SIGINT/SIGHUP close the server: exit 0

  async run(): Promise<void> {
    const { flags } = await this.parse(RolloutServe);
    const { openModel } = await import('../../lib/infer/index.js');
    const { ModelPolicy, servePolicy } = await import('../../lib/policy/index.js');
    const runner = await openModel(flags.policy, { device: flags.device as 'cpu', backend: flags.backend });
    const opts = policyOptions(runner, flags);
    const c = runner.config;
    const server = await servePolicy({
      port: flags.port,
      host: flags.host,
      makePolicy: () => new ModelPolicy(runner, opts),
      metadata: { model: flags.policy, engine: runner.info.engine, device: runner.info.device, mode: opts.mode, verifier: opts.verifier?.name, cameras: c.num_cameras, image_size: c.vision_config.image_size, action_dim: 4, action_codec: opts.codec.describe() },
      onRequest: (r) => this.note(`vlakit rollout serve: ${r.type} in ${r.ms.toFixed(1)} ms`, flags.quiet),
    });
    process.stderr.write(`vlakit rollout serve: ${flags.policy} (${runner.info.engine}, ${runner.info.device}) listening on ws://${flags.host}:${server.port}\n`);
    await new Promise<void>((resolve) => {
      if (this.abort.signal.aborted) resolve();
      this.abort.signal.addEventListener('abort', () => resolve());
    });
    await server.close();
    await opts.verifier?.close?.();
    await runner.dispose();
  }
}
