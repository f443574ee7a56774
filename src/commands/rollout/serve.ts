import { Flags } from '@oclif/core';
import { VlakitCommand } from '../../lib/cli/base.js';
import { type FlagRule, decimal, int, onlyWith, parseSize, size } from '../../lib/cli/flags.js';
import { policyFlags, policyOptions, policyRules } from '../../lib/cli/policy-flags.js';
import { obsMapOf, protocolFlags, protocolRules } from '../../lib/cli/protocol-flags.js';

export default class RolloutServe extends VlakitCommand {
  static summary = 'Serve a policy over a websocket (msgpack) for an external simulator or robot loop.';
  static description =
    'Loads a checkpoint or an export once and answers, per connection: metadata on connect; {type: "reset", instruction, seed}; {type: "infer", observation: {camera: PNG/JPEG bytes or {mime, b64}, state}, instruction, info?} -> {type: "actions", actions, done, info, timing: {model_ms, server_ms}}. Each connection is one episode at a time with its own policy state (direct or the VLM2VLA hierarchy); a nil or malformed request gets an error reply and the connection stays open. Each connection is bounded: the handshake and idleness are timed (--handshake-timeout, --idle-timeout), and it holds at most --max-queue requests of at most --max-message bytes (see docs/ROLLOUT.md). `vlakit rollout --policy ws://host:port` is a client; so is PolicyClient in the library. With --protocol openpi it speaks openpi\'s protocol instead: the metadata map on connect, observation dicts in (mapped by --obs-map), {actions: float32 [H, D], server_timing, policy_timing} out, an error as a text frame and close 1011; openpi\'s clients (its LIBERO, ALOHA and DROID examples) drive the policy unchanged.';
  static examples = [
    { description: 'Serve the exported policy on port 8765', command: '<%= config.bin %> rollout serve --policy runs/sft-onnx --port 8765' },
    { description: 'Direct mode, listening on every interface', command: '<%= config.bin %> rollout serve --policy runs/refinevla --mode direct --host 0.0.0.0 --port 8765' },
    { description: 'For openpi clients (its LIBERO example), with an API key', command: '<%= config.bin %> rollout serve --policy runs/refinevla --mode direct --protocol openpi --obs-map libero --api-key secret --port 8000' },
  ];
  static flags = {
    policy: Flags.string({ description: 'a checkpoint or export directory', required: true, helpValue: 'DIR' }),
    port: int({ description: 'port (0: any free port, printed on stderr)', default: 8765, min: 0, max: 65535 }),
    host: Flags.string({ description: 'interface to listen on', default: '127.0.0.1' }),
    'handshake-timeout': decimal({ description: 'seconds a new TCP connection has to finish the websocket handshake before it is dropped', default: '10', min: 0, minExclusive: true, max: 3600 }),
    'idle-timeout': decimal({ description: 'seconds without a message (and nothing in progress) before a connection is closed with 1001; 0: never', default: '300', min: 0, max: 86400 }),
    'max-message': size({ description: 'largest message a client may send; a larger one closes its connection with 1009', default: '64MiB', min: 1024, max: 2 ** 30 }),
    'max-queue': int({ description: 'requests of one connection queued or in progress; one more closes it with 1008', default: 4, min: 1, max: 64 }),
    ...policyFlags,
    ...protocolFlags,
    'default-prompt': Flags.string({ description: 'openpi: the instruction of requests without one (as openpi\'s serve_policy --default-prompt)', helpValue: 'TEXT' }),
    quiet: Flags.boolean({ char: 'q', description: 'no log of requests on stderr' }),
  };

  static flagRules: FlagRule[] = [...policyRules, ...protocolRules, onlyWith('default-prompt', '--protocol openpi', (i) => i.flags.protocol === 'openpi')];
  protected readonly signalIsStop = true; // SIGTERM/SIGINT/SIGHUP close the server: exit 0

  async run(): Promise<void> {
    const { flags } = await this.parse(RolloutServe);
    const openpi = flags.protocol === 'openpi' ? { obsMap: obsMapOf(flags), defaultPrompt: flags['default-prompt'] } : undefined; // checked before the model loads
    const { openModel } = await import('../../lib/infer/index.js');
    const { ModelPolicy, servePolicy } = await import('../../lib/policy/index.js');
    const runner = await openModel(flags.policy, { device: flags.device as 'cpu', backend: flags.backend, adapter: flags.adapter });
    const opts = policyOptions(runner, flags);
    const { isBuiltinRunner } = await import('../../lib/infer/index.js');
    const images = isBuiltinRunner(runner) ? { cameras: runner.config.num_cameras, image_size: runner.config.vision_config.image_size } : { cameras: runner.maxImages, model_type: runner.info.model };
    const server = await servePolicy({
      port: flags.port,
      host: flags.host,
      makePolicy: () => new ModelPolicy(runner, opts),
      metadata: { model: flags.policy, engine: runner.info.engine, device: runner.info.device, mode: opts.mode, verifier: opts.verifier?.name, ...images, action_dim: opts.codec.layout?.dims ?? 4, action_layout: opts.codec.layout, action_codec: opts.codec.describe() },
      onRequest: (r) => this.note(`vlakit rollout serve: ${r.type} in ${r.ms.toFixed(1)} ms`, flags.quiet),
      onNotice: (m) => this.note(`vlakit rollout serve: ${m}`, flags.quiet),
      handshakeTimeoutMs: Number(flags['handshake-timeout']) * 1000,
      idleTimeoutMs: Number(flags['idle-timeout']) * 1000,
      maxMessageBytes: parseSize(flags['max-message']),
      maxQueue: flags['max-queue'],
      protocol: flags.protocol as 'vlakit' | 'openpi',
      openpi: openpi && { ...openpi, actionDim: opts.codec.layout?.dims ?? 4 },
      apiKey: flags['api-key'],
    });
    process.stderr.write(`vlakit rollout serve: ${flags.policy} (${runner.info.engine}, ${runner.info.device}) listening on ws://${flags.host}:${server.port}${openpi ? ' (openpi protocol)' : ''}\n`);
    await new Promise<void>((resolve) => {
      if (this.abort.signal.aborted) resolve();
      this.abort.signal.addEventListener('abort', () => resolve());
    });
    await server.close();
    await opts.verifier?.close?.();
    await runner.dispose();
  }
}
